"""Upstream error messages never carry a secret of the credential in use: a provider that echoes every header it
received (API key, extra header values, Azure key, AWS access key) in its error reaches the /v1 client, the logs, the
audit log, an assistant reply and a connection test with every secret replaced by [REDACTED]."""

from __future__ import annotations

import logging

import httpx
import pytest

from llm.models import Message
from tenants.models import AuditEvent, Membership
from tests.gateway.conftest import gateway_url, reconfigured

__all__ = ["gateway_url"]  # the gateway fixture, served by uvicorn

KEY = "sk-test-SCRUB-key-0a1b2c3d4e5f6071"
TOKEN = "org-token-SCRUB-8192a3b4c5d6e7f8"
OTHER = "Second-Header-Secret-55667788"
AZURE_KEY = "azure0key0SCRUB0aabbccddeeff0011"
# Assembled at run time so the repository holds no string shaped like a real AWS key id.
AWS_ID, AWS_SECRET = "AKIA" + "SCRUBTEST0000123", "wJalrSCRUBsecret/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = (KEY, TOKEN, OTHER, AZURE_KEY, AWS_ID, AWS_SECRET)


def _leaks(text: str) -> list[str]:
    """Secrets (or a 10-character start of one, as a message cut in the middle of a secret would show) in text."""
    return [s for s in SECRETS if s in text or s[:10] in text]


def _save_endpoint(manage_client, echo, model: str = "echo-model") -> None:
    response = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": model,
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": echo.url + "/v1",
                "api_key": KEY,
                "headers": {"x-org-token": TOKEN, "x-second": OTHER},
            },
        },
        format="json",
    )
    assert response.status_code == 200, response.content


def _audit_text(tenant) -> str:
    return " ".join(
        f"{e.object_repr} {e.changes}" for e in AuditEvent.objects.unscoped().filter(tenant=tenant)
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("mode", "stream"), [("json", False), ("json", True), ("text", False), ("stream", True)]
)
def test_v1_error_logs_and_audit_hold_no_secret(
    gateway_url, echo, tenant, make_key, manage_client, caplog, mode, stream
):
    caplog.set_level(logging.DEBUG)
    _save_endpoint(manage_client, echo)
    reconfigured()
    echo.mode = mode
    key = make_key(tenant, scopes=["gateway"])
    response = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "default", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        timeout=30,
    )
    assert echo.seen
    assert echo.seen[-1]["x-org-token"] == TOKEN
    # its message reached the client, scrubbed (a plain-text one only up to the cut, before the secrets)
    assert ("xxxxxxxx" if mode == "text" else "[REDACTED]") in response.text, response.text
    assert _leaks(response.text) == []
    assert _leaks(caplog.text) == []
    assert _leaks(_audit_text(tenant)) == []


@pytest.mark.django_db(transaction=True)
def test_assistant_reply_holds_no_secret(echo, tenant, manage_client, make_user, client):
    _save_endpoint(manage_client, echo)
    member = make_user("member@acme.example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=member, role="member")
    client.force_login(member)
    thread = client.post("/api/llm/threads", {}, content_type="application/json").json()
    posted = client.post(
        f"/api/llm/threads/{thread['id']}/messages", {"content": "hi"}, content_type="application/json"
    )  # the reply task runs eagerly once this commits
    assert posted.status_code in (200, 201, 202), posted.content
    reply = Message.objects.unscoped().get(thread_id=thread["id"], role="assistant")
    assert echo.seen, reply.error
    assert echo.seen[-1]["x-org-token"] == TOKEN, reply.error
    assert reply.status == Message.Status.ERROR, reply.error
    assert "[REDACTED]" in reply.error, reply.error
    assert _leaks(reply.error) == []
    shown = client.get(f"/api/llm/threads/{thread['id']}/messages/{reply.id}")
    assert shown.status_code == 200
    assert _leaks(shown.content.decode()) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("endpoint", "header"),
    [
        (
            {
                "kind": "azure_openai",
                "api_key": AZURE_KEY,
                "deployment": "gpt-fake",
                "api_version": "2024-10-21",
                "headers": {"x-org-token": TOKEN},
            },
            "api-key",
        ),
        (
            {
                "kind": "bedrock",
                "region": "eu-central-1",
                "access_key_id": AWS_ID,
                "secret_access_key": AWS_SECRET,
            },
            "authorization",
        ),
    ],
    ids=["azure", "bedrock"],
)
def test_connection_test_error_holds_no_secret(echo, manage_client, caplog, endpoint, header):
    caplog.set_level(logging.DEBUG)
    body = manage_client.post(
        "/api/llm/test-connection",
        {"mode": "custom", "model": "echo-model", "custom_endpoint": {**endpoint, "base_url": echo.url}},
        format="json",
    )
    assert body.status_code == 200, body.content
    sent = echo.seen[-1][header]
    assert AZURE_KEY in sent or AWS_ID in sent  # the upstream got the secret it then echoes
    assert body.json()["ok"] is False, body.json()
    assert "[REDACTED]" in body.json()["error"]["message"], body.json()
    assert _leaks(body.content.decode()) == []
    assert _leaks(caplog.text) == []


@pytest.mark.django_db
def test_models_offered_by_an_endpoint_are_scrubbed_too(echo, manage_client):
    echo.mode = "models"
    body = manage_client.post(
        "/api/llm/test-connection",
        {
            "mode": "custom",
            "model": "echo-model",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": echo.url + "/v1",
                "api_key": KEY,
                "headers": {"x-org-token": TOKEN},
            },
        },
        format="json",
    ).json()
    assert body["error"]["kind"] == "not_found", body
    assert "[REDACTED]" in body["error"]["models"], body
    assert _leaks(str(body)) == []
