"""`/v1/embeddings` with `model: "default"`: the workspace's embedding model (a preference, in the API), else the
chat model's provider's embedding model, else a clear 400; never the chat model silently."""

from __future__ import annotations

import httpx
import pytest

from llm.models import Preferences
from tests.gateway.conftest import reconfigured

pytestmark = pytest.mark.django_db(transaction=True)
PREFS = "/api/llm/preferences"


def _embed(gateway_url: str, key: str, model: str = "default") -> httpx.Response:
    return httpx.post(
        gateway_url + "/v1/embeddings",
        json={"model": model, "input": ["a", "b"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _custom(manage_client, fake, **extra) -> None:
    saved = manage_client.post(
        PREFS,
        {
            "mode": "custom",
            "model": "llama3:8b",
            "custom_endpoint": {"kind": "openai_compatible", "base_url": fake.url + "/v1"},
            **extra,
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()


def _embedded_models(fake) -> list[str]:
    return [body.get("model") for path, _, body in fake.requests if path.endswith("/embeddings")]


def test_custom_mode_without_an_embedding_model_is_a_clear_400_not_the_chat_model(
    gateway_url, fake, tenant, make_key, manage_client
):
    _custom(manage_client, fake)
    key = make_key(tenant, scopes=["gateway"])
    refused = _embed(gateway_url, key)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "embedding_model_missing")
    assert "llama3:8b cannot embed" in error["message"]
    assert "embedding_model" in error["message"]
    assert _embedded_models(fake) == [], "the chat model was not asked to embed"

    set_ = manage_client.post(PREFS, {"embedding_model": "nomic-embed-text"}, format="json")
    assert set_.status_code in (200, 201), set_.content
    assert manage_client.get(PREFS).json()["embedding_model"] == "nomic-embed-text"
    reconfigured()
    answered = _embed(gateway_url, key)
    assert answered.status_code == 200, answered.text
    assert _embedded_models(fake) == ["nomic-embed-text"]
    assert _embed(gateway_url, key, model="llama3:8b").status_code == 200  # naming a model still works


def test_an_agent_without_its_own_embedding_model_follows_the_workspaces(
    gateway_url, fake, tenant, agent, make_key, manage_client
):
    _custom(manage_client, fake, embedding_model="nomic-embed-text")
    own = manage_client.post(
        f"{PREFS}?agent={agent.slug}", {"mode": "custom", "model": "qwen2.5:7b"}, format="json"
    )
    assert own.status_code in (200, 201), own.content
    reconfigured()
    answered = _embed(gateway_url, make_key(tenant, scopes=["gateway"], agent=agent))
    assert answered.status_code == 200, answered.text
    assert _embedded_models(fake) == ["nomic-embed-text"]


def test_byok_uses_the_chosen_embedding_model_of_the_catalog(
    gateway_url, fake, tenant, make_key, manage_client, monkeypatch
):
    from llm.calls.resolution import forget_env

    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    forget_env()
    saved = manage_client.post(
        PREFS,
        {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": "sk-test-byok-" + "e1e1"},
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    key = make_key(tenant, scopes=["gateway"])
    reconfigured()
    assert _embed(gateway_url, key).status_code == 200  # none chosen: OpenAI's own embedding model
    assert _embedded_models(fake) == ["text-embedding-3-small"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("openai:gpt-5-mini", "is a chat model"),
        ("nope:embedder", "not an embedding model of the catalog"),
        ("google:gemini-embedding-001", "No API key for google"),
        (["x"], "Not a valid string"),
    ],
)
def test_the_embedding_model_is_checked_like_the_gateway_would(manage_client, value, message):
    saved = manage_client.post(
        PREFS,
        {
            "mode": "byok",
            "model": "openai:gpt-5-mini",
            "api_key": "sk-test-byok-" + "e2e2",
            "embedding_model": value,
        },
        format="json",
    )
    assert saved.status_code == 400, saved.content
    assert any(message in m for m in saved.json()["embedding_model"]), saved.json()
    assert not Preferences.objects.unscoped().exists()
