"""Key rotation (#16): a new secret under the same key id; the old one works for the grace period, then stops;
audited without the secret; another tenant's key is 404."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.keys import hash_key, key_info
from tenants.models import ApiKey, AuditEvent

pytestmark = pytest.mark.django_db


def _key(tenant, make_key, **kwargs):
    raw = make_key(tenant, scopes=["gateway"], **kwargs)
    return ApiKey.objects.unscoped().get(key_hash=hash_key(raw)), raw


def test_rotate_returns_a_new_secret_under_the_same_id_and_the_old_one_works_for_the_grace(
    manage_client, tenant, make_key
):
    key, old = _key(tenant, make_key)
    assert key_info(old) is not None
    assert key_info(old).is_valid()

    answer = manage_client.post(f"/api/keys/{key.id}/rotate", {"grace_seconds": 3600}, format="json")

    assert answer.status_code == 200, answer.content
    body = answer.json()
    new = body["key"]
    assert body["id"] == key.id
    assert new.startswith("byok-")
    assert new != old
    assert body["masked"].endswith(new[-4:])
    assert body["rotated_at"] is not None
    assert key_info(new).id == key.id
    assert key_info(new).is_valid()
    old_info = key_info(old)
    assert old_info.id == key.id
    assert old_info.is_valid()
    assert old_info.expires_at is not None
    assert timedelta(minutes=59) < old_info.expires_at - timezone.now() <= timedelta(hours=1)
    assert not old_info.is_valid(now=timezone.now() + timedelta(hours=1, seconds=1))
    assert key_info(new).expires_at is None  # the new secret keeps the key's own expiry (none)


def test_rotate_defaults_to_a_day_of_grace_and_zero_stops_the_old_secret_now(manage_client, tenant, make_key):
    key, old = _key(tenant, make_key)
    body = manage_client.post(f"/api/keys/{key.id}/rotate", {}, format="json").json()
    grace = key_info(old).expires_at - timezone.now()
    assert timedelta(hours=23, minutes=59) < grace <= timedelta(hours=24)

    second = manage_client.post(f"/api/keys/{key.id}/rotate", {"grace_seconds": 0}, format="json")
    assert second.status_code == 200
    assert key_info(old) is None, "a secret in its grace period stops when the key is rotated again"
    assert key_info(body["key"]) is None, "grace 0: the secret just replaced stops at once"
    assert key_info(second.json()["key"]).is_valid()


def test_rotation_is_audited_without_any_secret(manage_client, tenant, make_key):
    key, old = _key(tenant, make_key)
    new = manage_client.post(f"/api/keys/{key.id}/rotate", {"grace_seconds": 120}, format="json").json()[
        "key"
    ]
    event = AuditEvent.objects.unscoped().get(tenant=tenant, action="apikey.rotate")
    assert event.object_id == str(key.id)
    assert event.changes["grace_seconds"] == 120
    text = repr(event.__dict__)
    for secret in (old, new, hash_key(old), hash_key(new), old[12:-4], new[12:-4]):
        assert secret not in text
    audit = manage_client.get("/api/audit?action=apikey.rotate")
    assert new not in audit.content.decode()
    assert "Gave an API key a new secret" in audit.content.decode()


@pytest.mark.parametrize(
    ("grace", "message"),
    [(-1, "greater than or equal"), (7 * 24 * 3600 + 1, "less than or equal"), ("soon", "valid integer")],
)
def test_a_bad_grace_period_is_a_field_error_and_changes_nothing(
    manage_client, tenant, make_key, grace, message
):
    key, old = _key(tenant, make_key)
    answer = manage_client.post(f"/api/keys/{key.id}/rotate", {"grace_seconds": grace}, format="json")
    assert answer.status_code == 400
    assert message in answer.json()["grace_seconds"][0]
    key.refresh_from_db()
    assert key.key_hash == hash_key(old)
    assert key.rotated_at is None


def test_a_revoked_key_cannot_be_rotated(manage_client, tenant, make_key):
    key, _ = _key(tenant, make_key)
    assert manage_client.delete(f"/api/keys/{key.id}").status_code == 200
    answer = manage_client.post(f"/api/keys/{key.id}/rotate", {}, format="json")
    assert answer.status_code == 400
    assert answer.json() == {"key": ["This key is revoked; create a new key instead."]}


def test_revoking_during_the_grace_stops_both_secrets(manage_client, tenant, make_key):
    key, old = _key(tenant, make_key)
    new = manage_client.post(f"/api/keys/{key.id}/rotate", {"grace_seconds": 3600}, format="json").json()[
        "key"
    ]
    assert key_info(old).is_valid()
    manage_client.delete(f"/api/keys/{key.id}")
    assert not key_info(old).is_valid()
    assert not key_info(new).is_valid()


def test_another_tenants_key_cannot_be_rotated(other_client, tenant, make_key):
    key, old = _key(tenant, make_key)
    answer = other_client.post(f"/api/keys/{key.id}/rotate", {"grace_seconds": 0}, format="json")
    assert answer.status_code == 404
    key.refresh_from_db()
    assert key.key_hash == hash_key(old)
    assert key.rotated_at is None
    assert not AuditEvent.objects.unscoped().filter(action="apikey.rotate").exists()


def test_another_tenants_key_cannot_be_rotated_from_the_keys_page(client, tenant, other_tenant, make_key):
    from tenants.models import Membership

    key, old = _key(tenant, make_key)
    client.force_login(Membership.objects.unscoped().get(tenant=other_tenant, role="owner").user)
    answer = client.post(f"/keys/{key.id}/rotate/", {"grace_seconds": "0"})
    assert answer.status_code == 404
    key.refresh_from_db()
    assert key.key_hash == hash_key(old)
    assert key.rotated_at is None
