"""Test connection against the fake upstream: ok, refused key, refused connection, unknown model, redirects."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from llm.models import Preferences
from tenants.audit import SYSTEM

pytestmark = pytest.mark.django_db
URL = "/api/llm/test-connection"


def _custom(fake_url, model="llama3:8b", api_key="sk-test-vllm-123456", base=None):
    return {
        "mode": "custom",
        "model": model,
        "custom_endpoint": {
            "kind": "openai_compatible",
            "base_url": base or fake_url + "/v1",
            "api_key": api_key,
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_good_key_is_ok(manage_client, fake):
    body = manage_client.post(URL, _custom(fake.url), format="json").json()
    assert body["ok"] is True
    assert body["error"] is None
    assert body["model"] == "custom:llama3:8b"
    assert body["latency_ms"] >= 0
    chat = [r for r in fake.requests if r[0].endswith("/chat/completions")][-1]
    assert chat[2]["messages"][0]["content"] == "ping"
    assert chat[2]["max_tokens"] <= 5
    assert not Preferences.objects.unscoped().exists()  # the settings were tested, not saved
    from llm.models import UsageEvent

    assert UsageEvent.objects.unscoped().filter(request_type="test", status="ok").count() == 1


def test_byok_key_through_the_fake_provider(manage_client, fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    from llm.calls import resolution

    resolution.forget_env()
    body = manage_client.post(
        URL,
        {"mode": "byok", "model": "anthropic:claude-haiku-4.5", "api_key": "sk-test-anthropic-abcdef"},
        format="json",
    ).json()
    assert body["ok"] is True, body
    bad = manage_client.post(
        URL,
        {"mode": "byok", "model": "anthropic:claude-haiku-4.5", "api_key": "sk-wrong-anthropic-abcdef"},
        format="json",
    ).json()
    assert bad["ok"] is False
    assert bad["error"]["kind"] == "auth"
    assert "sk-wrong" not in str(bad)


def test_saved_groq_key_is_tested_against_groq(manage_client, fake, monkeypatch):
    from llm.calls import resolution
    from llm.models import UsageEvent

    monkeypatch.setenv("GROQ_BASE_URL", fake.url + "/v1")
    resolution.forget_env()
    groq_key = "sk-test-groq-" + "5e8d2c4a9b1f"
    saved = manage_client.post("/api/llm/credentials", {"kind": "groq", "api_key": groq_key}, format="json")
    assert saved.status_code == 201, saved.content
    manage_client.post("/api/llm/preferences", {"mode": "byok", "model": "groq:llama-3.3-70b"}, format="json")
    body = manage_client.post(URL, {}, format="json").json()
    assert body["ok"] is True, body
    assert body["model"] == "groq:llama-3.3-70b"
    path, headers, sent = fake.requests[-1]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {groq_key}"
    assert (sent["model"], sent["messages"][0]["content"]) == ("llama-3.3-70b-versatile", "ping")
    event = UsageEvent.objects.unscoped().get(request_type="test")
    assert (event.provider, event.model, event.mode, event.status) == (
        "groq",
        "groq:llama-3.3-70b",
        "byok",
        "ok",
    )
    bad = manage_client.post(
        URL,
        {"mode": "byok", "model": "groq:llama-3.3-70b", "api_key": "sk-wrong-groq-0123456789"},
        format="json",
    ).json()
    assert (bad["ok"], bad["error"]["kind"]) == (False, "auth")
    assert "sk-wrong-groq" not in str(bad)


def test_bad_key_gets_the_auth_hint(manage_client, fake):
    body = manage_client.post(URL, _custom(fake.url, api_key="sk-bad-key-0000000000"), format="json").json()
    assert body["ok"] is False
    assert body["error"]["kind"] == "auth"
    assert "refused" in body["error"]["hint"]
    assert "copied" in body["error"]["hint"]


def test_rate_limited_gets_the_credit_hint(manage_client, fake):
    body = manage_client.post(URL, _custom(fake.url, model="fail-429"), format="json").json()
    assert body["error"]["kind"] == "rate_limit"
    assert "credit" in body["error"]["hint"]


def test_wrong_port_gets_the_connection_refused_hint(manage_client):
    base = f"http://127.0.0.1:{_free_port()}/v1"
    body = manage_client.post(URL, _custom("", base=base), format="json").json()
    assert body["ok"] is False
    assert body["error"]["kind"] == "unavailable"
    assert "running" in body["error"]["hint"]
    assert "Ollama" in body["error"]["hint"]


def test_missing_model_lists_what_the_endpoint_offers(manage_client, fake):
    body = manage_client.post(URL, _custom(fake.url, model="missing-model"), format="json").json()
    assert body["ok"] is False
    assert body["error"]["kind"] == "not_found"
    assert body["error"]["models"] == ["gpt-fake", "llama3:8b"]
    assert "gpt-fake" in body["error"]["hint"]


def test_saved_settings_are_tested_when_the_body_is_empty(manage_client, fake):
    manage_client.post("/api/llm/preferences", _custom(fake.url), format="json")
    body = manage_client.post(URL, {}, format="json").json()
    assert body["ok"] is True
    assert body["model"] == "custom:llama3:8b"
    assert manage_client.get("/api/llm/credentials").json()[0]["last_verified_at"] is not None


def test_invalid_settings_are_field_errors(manage_client):
    response = manage_client.post(URL, {"mode": "custom", "model": "m"}, format="json")
    assert response.status_code == 400
    assert "custom_endpoint" in response.json()


def test_private_endpoint_is_refused_in_production(manage_client, settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    response = manage_client.post(URL, _custom("", base="http://169.254.169.254/v1"), format="json")
    assert response.status_code == 400
    assert "base_url" in response.json()["custom_endpoint"]


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []
    location = ""

    def do_POST(self):
        type(self).hits.append(self.path)
        self.send_response(307)
        self.send_header("Location", type(self).location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


def test_redirects_are_not_followed(manage_client):
    class Target(_Recorder):
        hits: list[str] = []

    class Redirector(_Recorder):
        hits: list[str] = []

    target = HTTPServer(("127.0.0.1", 0), Target)
    redirector = HTTPServer(("127.0.0.1", 0), Redirector)
    Redirector.location = f"http://127.0.0.1:{target.server_port}/internal-admin"
    for server in (target, redirector):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = manage_client.post(
            URL, _custom("", base=f"http://127.0.0.1:{redirector.server_port}/v1"), format="json"
        ).json()
        assert body["ok"] is False
        assert Redirector.hits
        assert not Target.hits
    finally:
        target.shutdown()
        redirector.shutdown()


def test_ollama_discovery(manage_client, fake):
    body = manage_client.get(f"/api/llm/ollama/models?base_url={fake.url}").json()
    assert body["models"] == ["ollama:llama3:8b", "ollama:qwen2.5:7b"]
    down = manage_client.get(f"/api/llm/ollama/models?base_url=http://127.0.0.1:{_free_port()}")
    assert down.status_code == 400
    assert "running" in down.json()["base_url"][0]


def test_ollama_discovery_is_ssrf_checked(manage_client, settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    response = manage_client.post(
        "/api/llm/ollama/models", {"base_url": "http://10.0.0.5:11434"}, format="json"
    )
    assert response.status_code == 400
    assert "private" in response.json()["base_url"][0]


# --- Discover models for a custom endpoint ------------------------------------------------------------------

DISCOVER = "/api/llm/endpoint-models"


def test_discovery_asks_an_openai_compatible_server_for_its_model_list(manage_client, fake):
    fake.reset()
    body = manage_client.post(
        DISCOVER, {"base_url": fake.url + "/vllm/v1", "api_key": "sk-test-vllm-1"}, format="json"
    )
    assert body.status_code == 200, body.json()
    assert body.json() == {
        "base_url": fake.url + "/vllm/v1",
        "source": "openai",
        "models": ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"],
    }
    assert [path for path, _, _ in fake.requests] == ["/vllm/v1/models"]


def test_discovery_falls_back_to_ollamas_own_list(manage_client, fake):
    body = manage_client.post(DISCOVER, {"base_url": fake.url}, format="json").json()
    assert (body["source"], body["models"]) == ("ollama", ["llama3:8b", "qwen2.5:7b"])


def test_discovery_problems_are_plain_words(manage_client, fake):
    refused = manage_client.post(DISCOVER, {"base_url": fake.url + "/vllm/v1"}, format="json")
    assert refused.status_code == 400
    assert "refused" in refused.json()["base_url"][0]
    neither = manage_client.post(DISCOVER, {"base_url": fake.url + "/nothing/v1"}, format="json")
    assert "neither an OpenAI-compatible model list" in neither.json()["base_url"][0]
    down = manage_client.post(DISCOVER, {"base_url": f"http://127.0.0.1:{_free_port()}/v1"}, format="json")
    assert "Nothing is listening" in down.json()["base_url"][0]
    empty = manage_client.post(DISCOVER, {}, format="json")
    assert "base URL" in empty.json()["base_url"][0]


def test_discovery_is_ssrf_checked(manage_client, settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    response = manage_client.post(DISCOVER, {"base_url": "http://10.0.0.5:8000/v1"}, format="json")
    assert response.status_code == 400
    assert "private" in response.json()["base_url"][0]


def test_discovery_sends_a_saved_token_only_to_its_own_origin_and_tenant(manage_client, other_client, fake):
    saved = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": fake.url + "/vllm/v1",
                "api_key": "sk-test-vllm-saved",
            },
        },
        format="json",
    )
    assert saved.status_code == 200, saved.json()
    fake.reset()
    mine = manage_client.post(DISCOVER, {"base_url": fake.url + "/vllm/v1"}, format="json")
    assert mine.status_code == 200, mine.json()
    assert fake.requests[-1][1]["authorization"] == "Bearer sk-test-vllm-saved"
    theirs = other_client.post(DISCOVER, {"base_url": fake.url + "/vllm/v1"}, format="json")
    assert theirs.status_code == 400
    assert "authorization" not in fake.requests[-1][1]
    elsewhere = manage_client.post(DISCOVER, {"base_url": "http://localhost:1/v1"}, format="json")
    assert elsewhere.status_code == 400
    assert "sk-test-vllm-saved" not in str(elsewhere.json())


def _chats(fake) -> int:
    return sum(1 for r in fake.requests if r[0].endswith("/chat/completions"))


def test_a_key_tests_only_what_its_allow_list_lets_it_call(tenant, make_key, fake):
    """The ping is a call the key makes: a key allowed only other models is told so, and nothing is sent, spent,
    metered or audited; a model its list names is tested."""
    from rest_framework.test import APIClient

    from llm.models import UsageEvent
    from tenants.models import AuditEvent

    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {make_key(tenant, allowed_models=['custom:qwen2', 'openai:*'])}"
    )
    audited = AuditEvent.objects.unscoped().count()
    body = client.post(URL, _custom(fake.url), format="json").json()
    assert body["ok"] is False, body
    assert body["model"] == "custom:llama3:8b"
    assert body["error"]["kind"] == "not_allowed"
    assert body["error"]["message"] == "This key may call only: custom:qwen2, openai:*."
    assert "allow-list" in body["error"]["hint"]
    assert _chats(fake) == 0
    assert not UsageEvent.objects.unscoped().exists()
    assert AuditEvent.objects.unscoped().count() == audited  # not even the new origin

    allowed = APIClient()
    allowed.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(tenant, allowed_models=['custom:*'])}")
    assert allowed.post(URL, _custom(fake.url), format="json").json()["ok"] is True
    assert _chats(fake) == 1
    listing_default = APIClient()
    listing_default.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(tenant, allowed_models=['default'])}")
    assert listing_default.post(URL, _custom(fake.url), format="json").json()["ok"] is True


def test_a_key_is_held_to_its_agents_allow_list_too(tenant, make_key, fake):
    from rest_framework.test import APIClient

    from tenants.services import agent_create

    bot = agent_create(tenant=tenant, actor=SYSTEM, slug="bot", name="Bot", allowed_models=["openai:*"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(tenant, agent=bot)}")
    body = client.post(URL, _custom(fake.url), format="json").json()
    assert body["error"]["kind"] == "not_allowed", body
    assert body["error"]["message"] == "The agent “bot” may call only: openai:*."
    assert _chats(fake) == 0


def test_an_agents_settings_are_tested_within_its_allow_list(tenant, fake):
    """An owner testing an agent's settings hears that the agent's keys would be refused that model, before the
    agent goes live with it; the workspace's own settings are not held to an agent's list."""
    from django.test import Client

    from tenants.models import Membership
    from tenants.services import agent_create

    agent_create(tenant=tenant, actor=SYSTEM, slug="bot", name="Bot", allowed_models=["openai:gpt-5-mini"])
    owner = Client()
    owner.force_login(Membership.objects.unscoped().get(tenant=tenant, role="owner").user)
    body = owner.post(f"{URL}?agent=bot", _custom(fake.url), content_type="application/json").json()
    assert body["ok"] is False, body
    assert body["error"]["message"] == "The agent “bot” may call only: openai:gpt-5-mini."
    assert _chats(fake) == 0
    assert owner.post(URL, _custom(fake.url), content_type="application/json").json()["ok"] is True
