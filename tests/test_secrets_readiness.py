"""Keys that cannot read what is stored (SECRET_KEY or CRYPTOGRAPHY_KEYS changed without the old key): `/readyz`
says so, naming what is unreadable and what to do, so such a deployment never takes traffic; and a call's limits
never depend on the encrypted alert-webhook secret."""

from __future__ import annotations

import pytest
from django.core.signing import BadSignature
from django.db import connection

from billing.caps import managed_access
from billing.models import Subscription
from billing.plans import assign_plan
from llm.config import encryption
from llm.config.credentials import credential_create
from tenants.audit import SYSTEM
from tests.conftest import clear_redis_namespace
from tests.llm_config.inputs import credential_input

pytestmark = pytest.mark.django_db

SECRET = "sk-tenant-secret-never-shown-1"


@pytest.fixture(autouse=True)
def _fresh_key_caches():
    for cache in (encryption._masters, encryption._data_keys, encryption._readable):
        cache.clear()
    yield
    for cache in (encryption._masters, encryption._data_keys, encryption._readable):
        cache.clear()


def _ready(client) -> tuple[int, dict]:
    encryption._masters.clear()
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_readyz_passes_with_the_keys_that_wrote_the_secrets(client, settings, tenant):
    settings.CRYPTOGRAPHY_KEYS = ["first-master-key-aaaaaaaaaaaa"]
    credential_create(
        tenant=tenant, actor=SYSTEM, data=credential_input(tenant, kind="openai", api_key=SECRET)
    )
    status, body = _ready(client)
    assert status == 200
    assert body["checks"]["secrets"] == "ok"


def test_readyz_is_503_naming_the_keys_when_the_data_keys_cannot_be_unwrapped(client, settings, tenant):
    settings.CRYPTOGRAPHY_KEYS = ["first-master-key-aaaaaaaaaaaa"]
    credential_create(
        tenant=tenant, actor=SYSTEM, data=credential_input(tenant, kind="openai", api_key=SECRET)
    )
    settings.CRYPTOGRAPHY_KEYS = ["a-new-key-without-the-old-one"]
    status, body = _ready(client)
    assert status == 503
    assert body["failing"] == ["secrets"]
    assert "cannot be unwrapped" in body["checks"]["secrets"]
    assert "rotate_encryption_key" in body["checks"]["secrets"]
    assert SECRET not in str(body)
    assert "a-new-key" not in str(body)
    settings.CRYPTOGRAPHY_KEYS = ["a-new-key-without-the-old-one", "first-master-key-aaaaaaaaaaaa"]
    assert _ready(client)[0] == 200, "the old key put back after the new one: ready again"


def test_readyz_names_an_encrypted_field_that_the_first_key_cannot_read(client, settings, tenant):
    """The alert-webhook secret is a django-cryptography field: it reads with the first key only."""
    written_with = settings.CRYPTOGRAPHY_KEYS[0]
    sub = assign_plan(tenant=tenant, plan_slug="enterprise")
    sub.alert_webhook_secret = "whsec-never-shown-2"
    sub.save(update_fields=["alert_webhook_secret"])
    settings.CRYPTOGRAPHY_KEYS = ["a-newer-key-first", written_with]
    status, body = _ready(client)
    assert status == 503
    assert "billing.Subscription.alert_webhook_secret" in body["checks"]["secrets"]
    assert "older key" in body["checks"]["secrets"]
    settings.CRYPTOGRAPHY_KEYS = ["a-newer-key-first"]
    status, body = _ready(client)
    assert status == 503
    assert "cannot be decrypted" in body["checks"]["secrets"]
    assert "whsec" not in str(body)


def test_a_calls_limits_do_not_read_the_encrypted_webhook_secret(tenant):
    sub = assign_plan(tenant=tenant, plan_slug="enterprise")
    sub.alert_webhook_secret = "whsec-never-shown-3"
    sub.save(update_fields=["alert_webhook_secret"])
    with connection.cursor() as cursor:  # what a different key would make of it: unreadable
        cursor.execute(
            "UPDATE billing_subscription SET alert_webhook_secret = %s WHERE id = %s",
            [b"not-a-token", sub.pk],
        )
    with pytest.raises(BadSignature):
        Subscription.objects.for_tenant(tenant.id).get()
    clear_redis_namespace()
    assert managed_access(tenant.id, None) is None
