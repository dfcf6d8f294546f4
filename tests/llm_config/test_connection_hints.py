"""Connection-test hints that blame only what the user controls, and Ollama's own failures with Ollama's remedies
(a local fake answering as a real Ollama server does)."""

from __future__ import annotations

import pytest

from llm.calls import connection_test, resolution
from tests.fakes.ollama_failures import NOT_PULLED, OUT_OF_MEMORY, SLOW, FailingOllama

pytestmark = pytest.mark.django_db
URL = "/api/llm/test-connection"


@pytest.fixture
def ollama():
    server = FailingOllama().start()
    yield server
    server.stop()


def _ollama(url: str, model: str = "ollama:llama3.1:70b") -> dict:
    return {"mode": "custom", "model": model, "custom_endpoint": {"kind": "ollama", "base_url": url + "/v1"}}


def test_an_unreachable_provider_host_is_not_the_users_spelling(manage_client, monkeypatch):
    """BYOK: the user typed a key, not a URL; a provider host this server cannot look up is the server's problem."""
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.invalid/v1")
    resolution.forget_env()
    body = manage_client.post(
        URL, {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": "sk-test-" + "dns-9876"}, format="json"
    ).json()
    assert body["ok"] is False
    hint = body["error"]["hint"]
    assert "spelling" not in hint
    assert "URL" not in hint
    assert "This server could not look up api.openai.invalid" in hint
    assert "Nothing you entered is wrong" in hint


def test_an_unresolvable_url_the_user_typed_is_worth_checking(manage_client):
    body = manage_client.post(
        URL,
        {
            "mode": "custom",
            "model": "llama3:8b",
            "custom_endpoint": {"kind": "openai_compatible", "base_url": "http://vllm.example.invalid/v1"},
        },
        format="json",
    ).json()
    assert body["ok"] is False
    assert "check the spelling of the URL" in body["error"]["hint"]


def test_ollama_model_not_pulled_says_ollama_pull(manage_client, ollama):
    ollama.failure = NOT_PULLED
    body = manage_client.post(URL, _ollama(ollama.url), format="json").json()
    assert body["ok"] is False
    assert body["error"]["kind"] == "not_found"
    assert "`ollama pull llama3.1:70b`" in body["error"]["hint"]


def test_ollama_out_of_memory_says_pick_a_smaller_model(manage_client, ollama):
    ollama.failure = OUT_OF_MEMORY
    body = manage_client.post(URL, _ollama(ollama.url), format="json").json()
    assert body["ok"] is False
    hint = body["error"]["hint"]
    assert "not have enough memory" in hint
    assert "smaller model" in hint
    assert "check the URL" not in hint


def test_ollama_slow_first_load_says_try_again(manage_client, ollama, monkeypatch):
    ollama.failure, ollama.delay = SLOW, 3.0
    monkeypatch.setattr(connection_test, "PING_TIMEOUT", 0.5)
    body = manage_client.post(URL, _ollama(ollama.url), format="json").json()
    assert body["ok"] is False
    assert body["error"]["kind"] == "timeout"
    assert "loads a model into memory on its first call" in body["error"]["hint"]
