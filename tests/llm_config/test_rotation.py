"""Key rotation: old keys still decrypt, the command re-encrypts under the newest key with a count, resumably."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from llm.config import encryption
from llm.config.credentials import credential_create, secrets_of
from llm.models import Credential, TenantDataKey
from tenants.audit import SYSTEM
from tests.llm_config.inputs import credential_input

pytestmark = pytest.mark.django_db

OLD, NEW, NEWER = (
    "old-master-key-aaaaaaaaaaaaaaaa",
    "new-master-key-bbbbbbbbbbbbbbbb",
    "newer-master-key-ccccccccc",
)


def _forget():
    encryption._data_keys.clear()
    encryption._masters.clear()


def _secret(pk: int) -> str:
    _forget()
    return secrets_of(Credential.objects.unscoped().select_related("data_key").get(pk=pk))["api_key"]


@pytest.fixture
def stored(settings, tenant, other_tenant):
    settings.CRYPTOGRAPHY_KEYS = [OLD]
    a = credential_create(
        tenant=tenant,
        actor=SYSTEM,
        data=credential_input(tenant, kind="openai", api_key="sk-tenant-a-secret-1"),
    )
    b = credential_create(
        tenant=other_tenant,
        actor=SYSTEM,
        data=credential_input(other_tenant, kind="openai", api_key="sk-tenant-b-secret-2"),
    )
    return a, b


def test_each_tenant_has_its_own_data_key(stored):
    a, b = stored
    assert a.data_key_id != b.data_key_id
    assert TenantDataKey.objects.unscoped().count() == 2


def test_old_key_still_decrypts_after_a_new_key_is_added(settings, stored):
    settings.CRYPTOGRAPHY_KEYS = [NEW, OLD]
    assert _secret(stored[0].pk) == "sk-tenant-a-secret-1"


def test_rotation_reencrypts_under_the_newest_key_with_a_count(settings, stored, capsys):
    settings.CRYPTOGRAPHY_KEYS = [NEW, OLD]
    call_command("rotate_encryption_key")
    assert "2 data keys re-wrapped" in capsys.readouterr().out
    settings.CRYPTOGRAPHY_KEYS = [NEW]  # the old key is gone: everything still decrypts
    assert _secret(stored[0].pk) == "sk-tenant-a-secret-1"
    assert _secret(stored[1].pk) == "sk-tenant-b-secret-2"
    call_command("rotate_encryption_key")
    assert "0 data keys re-wrapped" in capsys.readouterr().out


def test_without_rotation_removing_the_old_key_fails_loudly(settings, stored):
    settings.CRYPTOGRAPHY_KEYS = [NEW]
    with pytest.raises(encryption.DecryptionError) as exc:
        _secret(stored[0].pk)
    assert "sk-tenant" not in str(exc.value)


def test_interrupted_rotation_resumes(settings, stored, monkeypatch, capsys):
    settings.CRYPTOGRAPHY_KEYS = [NEW, OLD]
    real = encryption.rewrap
    calls = {"n": 0}

    def flaky(wrapped: str) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(wrapped)

    monkeypatch.setattr(encryption, "rewrap", flaky)
    with pytest.raises(RuntimeError):
        call_command("rotate_encryption_key")
    monkeypatch.setattr(encryption, "rewrap", real)
    call_command("rotate_encryption_key")
    assert "1 data keys re-wrapped" in capsys.readouterr().out
    settings.CRYPTOGRAPHY_KEYS = [NEW]
    assert _secret(stored[0].pk) == "sk-tenant-a-secret-1"
    assert _secret(stored[1].pk) == "sk-tenant-b-secret-2"


def test_data_key_rotation_reencrypts_every_credential(settings, stored, capsys):
    a, _ = stored
    before = Credential.objects.unscoped().get(pk=a.pk).secrets_ciphertext
    settings.CRYPTOGRAPHY_KEYS = [NEWER, OLD]
    call_command("rotate_encryption_key", "--data-keys")
    out = capsys.readouterr().out
    assert "2 new data keys, 2 credentials re-encrypted" in out
    after = Credential.objects.unscoped().get(pk=a.pk)
    assert after.secrets_ciphertext != before
    assert TenantDataKey.objects.unscoped().count() == 2  # the old data keys are gone
    settings.CRYPTOGRAPHY_KEYS = [NEWER]
    assert _secret(a.pk) == "sk-tenant-a-secret-1"
    call_command("rotate_encryption_key", "--data-keys")
    assert "0 new data keys, 0 credentials re-encrypted" in capsys.readouterr().out


def test_other_apps_encrypted_fields_move_to_the_newest_key(settings, tenant, capsys):
    import pickle

    from django.db import connection

    from billing.models import Subscription
    from billing.plans import ensure_subscription

    startup_key = settings.CRYPTOGRAPHY_KEYS[0]  # what django-cryptography derived its key from
    sub = ensure_subscription(tenant)
    Subscription.objects.unscoped().filter(pk=sub.pk).update(alert_webhook_secret="whsec-tenant-a-0000")
    settings.CRYPTOGRAPHY_KEYS = [NEW, startup_key]
    call_command("rotate_encryption_key")
    assert "1 other encrypted values re-encrypted" in capsys.readouterr().out
    with connection.cursor() as cursor:
        cursor.execute("SELECT alert_webhook_secret FROM billing_subscription WHERE id = %s", [sub.pk])
        raw = bytes(cursor.fetchone()[0])
    assert b"whsec" not in raw
    assert pickle.loads(encryption._field_fernet(NEW).decrypt(raw)) == "whsec-tenant-a-0000"
    call_command("rotate_encryption_key")
    assert "0 other encrypted values re-encrypted" in capsys.readouterr().out
