"""A stored secret is bound to the origin (scheme, host, port) it was saved with: moving a credential or custom
endpoint elsewhere needs its secrets again, and a connection test to an unsaved origin sends only the secrets given
with it. Proven with a second fake provider (`elsewhere`) that records every header it receives."""

from __future__ import annotations

import pytest

from llm.models import Credential
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db

KEY = "sk-test-SAVED-key-0f1e2d3c4b5a6978"
TOKEN = "org-token-SAVED-5a6b7c8d9e0f1a2b"
PREFS, TEST, CREDS = "/api/llm/preferences", "/api/llm/test-connection", "/api/llm/credentials"


def _endpoint(base_url: str, **secrets) -> dict:
    return {
        "mode": "custom",
        "model": "llama3:8b",
        "custom_endpoint": {"kind": "openai_compatible", "base_url": base_url, **secrets},
    }


def _save(api, fake) -> int:
    response = api.post(
        PREFS, _endpoint(fake.url + "/v1", api_key=KEY, headers={"x-org-token": TOKEN}), format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["custom_endpoint"]["id"]


def _received(server) -> str:
    """Every header value the server was sent, as one text."""
    return " ".join(value for _, headers, _ in server.requests for value in headers.values())


def test_connection_test_to_a_new_origin_sends_no_saved_secret(api, fake, elsewhere, tenant):
    _save(api, fake)
    body = api.post(TEST, _endpoint(elsewhere.url + "/v1"), format="json").json()
    assert body["ok"] is True, body  # the fake answers keyless calls, so the ping reached it
    assert elsewhere.requests, "the test went to the new origin"
    received = _received(elsewhere)
    assert KEY not in received
    assert TOKEN not in received
    assert "authorization" not in elsewhere.requests[-1][1]
    assert "x-org-token" not in elsewhere.requests[-1][1]


def test_connection_test_to_a_new_origin_sends_only_the_secrets_given_with_it(api, fake, elsewhere):
    _save(api, fake)
    given = "sk-test-GIVEN-for-elsewhere-1234"
    body = api.post(TEST, _endpoint(elsewhere.url + "/v1", api_key=given), format="json").json()
    assert body["ok"] is True, body
    headers = elsewhere.requests[-1][1]
    assert headers["authorization"] == f"Bearer {given}"
    assert TOKEN not in _received(elsewhere)
    assert KEY not in _received(elsewhere)


def test_connection_test_to_a_new_origin_is_audited_without_secrets(api, fake, elsewhere, tenant):
    _save(api, fake)
    api.post(TEST, _endpoint(elsewhere.url + "/v1"), format="json")
    events = list(
        AuditEvent.objects.unscoped().filter(tenant=tenant, action="llm.connection_test.new_origin")
    )
    assert len(events) == 1
    assert events[0].changes["origin"] == f"http://127.0.0.1:{elsewhere.port}"
    assert events[0].actor_user is not None or events[0].actor_key is not None
    assert KEY not in str(events[0].changes)
    assert TOKEN not in str(events[0].changes)


def test_connection_test_of_the_saved_origin_is_not_audited_and_uses_the_saved_secrets(api, fake, tenant):
    _save(api, fake)
    fake.reset()
    # the same origin under another path
    body = api.post(TEST, _endpoint(fake.url + "/status/503/v1"), format="json").json()
    assert body["error"]["kind"] == "unavailable", body
    assert fake.requests[-1][1]["authorization"] == f"Bearer {KEY}"
    assert fake.requests[-1][1]["x-org-token"] == TOKEN
    assert (
        not AuditEvent.objects.unscoped()
        .filter(tenant=tenant, action="llm.connection_test.new_origin")
        .exists()
    )


def test_moving_a_credential_without_its_secrets_is_refused_and_changes_nothing(api, fake, elsewhere):
    credential_id = _save(api, fake)
    response = api.patch(f"{CREDS}/{credential_id}", {"base_url": elsewhere.url + "/v1"}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"api_key", "headers"}
    assert "enter the API key again" in errors["api_key"][0]
    assert Credential.objects.unscoped().get(pk=credential_id).base_url == fake.url + "/v1"
    api.post(TEST, {}, format="json")  # the saved settings still go to the saved origin only
    assert not elsewhere.requests


def test_moving_a_credential_with_only_some_secrets_is_refused(api, fake, elsewhere):
    credential_id = _save(api, fake)
    response = api.patch(
        f"{CREDS}/{credential_id}",
        {"base_url": elsewhere.url + "/v1", "api_key": "sk-test-NEW-key-778899aabb"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"headers"}


def test_moving_a_credential_with_its_secrets_sends_only_the_new_ones(api, fake, elsewhere):
    credential_id = _save(api, fake)
    new_key, new_token = "sk-test-NEW-key-778899aabb", "org-token-NEW-ccddeeff0011"
    response = api.patch(
        f"{CREDS}/{credential_id}",
        {"base_url": elsewhere.url + "/v1", "api_key": new_key, "headers": {"x-org-token": new_token}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert api.post(TEST, {}, format="json").json()["ok"] is True
    assert elsewhere.requests[-1][1]["authorization"] == f"Bearer {new_key}"
    assert elsewhere.requests[-1][1]["x-org-token"] == new_token
    assert KEY not in _received(elsewhere)
    assert TOKEN not in _received(elsewhere)


def test_provider_key_moved_off_the_providers_address_needs_the_key_again(api, elsewhere):
    created = api.post(CREDS, {"kind": "openai", "api_key": KEY}, format="json")
    assert created.status_code == 201, created.content
    response = api.patch(
        f"{CREDS}/{created.json()['id']}", {"base_url": elsewhere.url + "/v1"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"api_key"}
    assert Credential.objects.unscoped().get(pk=created.json()["id"]).base_url == ""


def test_path_change_on_the_same_origin_keeps_the_secrets(api, fake):
    credential_id = _save(api, fake)
    response = api.patch(f"{CREDS}/{credential_id}", {"base_url": fake.url + "/v1/"}, format="json")
    assert response.status_code == 200, response.content
    fake.reset()
    assert api.post(TEST, {}, format="json").json()["ok"] is True
    assert fake.requests[-1][1]["authorization"] == f"Bearer {KEY}"


def test_preferences_moving_the_endpoint_need_its_secrets_again(api, fake, elsewhere):
    credential_id = _save(api, fake)
    response = api.post(PREFS, _endpoint(elsewhere.url + "/v1"), format="json")
    assert response.status_code == 400
    assert set(response.json()["custom_endpoint"]) == {"api_key", "headers"}
    assert Credential.objects.unscoped().get(pk=credential_id).base_url == fake.url + "/v1"
    moved = api.post(
        PREFS,
        _endpoint(elsewhere.url + "/v1", api_key="sk-test-NEW-key-778899aabb", headers={}),
        format="json",
    )
    assert moved.status_code == 200, moved.content
    assert api.post(TEST, {}, format="json").json()["ok"] is True
    assert elsewhere.requests[-1][1]["authorization"] == "Bearer sk-test-NEW-key-778899aabb"
    assert KEY not in _received(elsewhere)
    assert TOKEN not in _received(elsewhere)
