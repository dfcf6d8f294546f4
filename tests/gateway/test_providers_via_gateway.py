"""The official openai SDK through the gateway against each fake provider's wire protocol (platform keys and
custom endpoints): chat, a stream with usage, embeddings where the provider has them."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

PLATFORM = [
    # model, env prefix, base URL suffix, embedding model
    ("anthropic:claude-haiku-4.5", "ANTHROPIC", "", None),
    ("google:gemini-2.5-flash", "GOOGLE", "", "google:gemini-embedding-001"),
    ("cohere:command-a", "COHERE", "", "cohere:embed-v4.0"),
    ("mistral:mistral-medium-3.1", "MISTRAL", "/v1", "mistral:mistral-embed"),
    ("openai:gpt-5", "OPENAI", "/v1", "openai:text-embedding-3-small"),
]


@pytest.fixture
def enterprise(tenant):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


def _client(gateway_url, key):
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)


@pytest.mark.parametrize(
    ("model", "prefix", "suffix", "embedding"), PLATFORM, ids=[p[1].lower() for p in PLATFORM]
)
def test_platform_provider(
    gateway_url, fake, enterprise, make_key, monkeypatch, model, prefix, suffix, embedding
):
    monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
    monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    reconfigured()
    client = _client(gateway_url, make_key(enterprise, scopes=["gateway"]))
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content.startswith("Hello from fake")
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith(
        "Hello from fake"
    )
    assert chunks[-1].usage.completion_tokens == 5
    if embedding:
        vectors = client.embeddings.create(model=embedding, input=["a", "b"])
        assert len(vectors.data) == 2
    events = drain_events()
    assert {e.provider for e in events} == {model.split(":")[0]}
    assert all(e.status == "ok" and e.cost_usd > 0 and e.mode == "platform" for e in events)


@pytest.mark.parametrize(
    ("endpoint", "model"),
    [
        (
            {
                "kind": "azure_openai",
                "base_url": "{fake}",
                "api_key": "sk-test-azure",
                "deployment": "gpt-fake",
                "api_version": "2024-10-21",
            },
            "gpt-fake",
        ),
        ({"kind": "openai_compatible", "base_url": "{fake}/v1"}, "llama3:8b"),
    ],
    ids=["azure", "ollama"],
)
def test_custom_endpoint(gateway_url, fake, tenant, make_key, manage_client, endpoint, model):
    endpoint = {k: v.replace("{fake}", fake.url) if isinstance(v, str) else v for k, v in endpoint.items()}
    saved = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": model,
            "custom_endpoint": {**endpoint, "input_usd_per_mtok": 1, "output_usd_per_mtok": 2},
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()
    client = _client(gateway_url, make_key(tenant, scopes=["gateway"]))
    reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content.startswith("Hello from fake")
    chunks = list(
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.prompt_tokens == 12
    events = drain_events()
    assert len(events) == 2
    assert all(e.mode == "custom" for e in events)
    assert float(events[0].cost_usd) == pytest.approx(
        0.000022
    )  # 12 × $1/1M + 5 × $2/1M: custom prices count to caps


def test_models_lists_what_the_tenants_ollama_server_has_pulled(
    gateway_url, fake, tenant, make_key, manage_client
):
    saved = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "ollama:llama3:8b",
            "custom_endpoint": {"kind": "ollama", "base_url": fake.url + "/v1"},
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()
    client = _client(gateway_url, make_key(tenant, scopes=["gateway"]))
    ids = [m.id for m in client.models.list()]
    assert {"ollama:llama3:8b", "ollama:qwen2.5:7b"} <= set(ids), ids
    assert ids.count("ollama:llama3:8b") == 1
    asked = [path for path, _, _ in fake.requests].count("/api/tags")
    assert {m.id for m in client.models.list()} == set(ids)
    assert [path for path, _, _ in fake.requests].count("/api/tags") == asked, (
        "remembered, not asked per call"
    )
    reply = client.chat.completions.create(
        model="ollama:qwen2.5:7b", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content.startswith("Hello from fake")
    assert fake.requests[-1][2]["model"] == "qwen2.5:7b"


def test_models_still_answers_when_the_ollama_server_is_down(gateway_url, tenant, make_key, manage_client):
    from tests.gateway.conftest import _free_port

    saved = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "ollama:llama3:8b",
            "custom_endpoint": {"kind": "ollama", "base_url": f"http://127.0.0.1:{_free_port()}"},
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()
    ids = [m.id for m in _client(gateway_url, make_key(tenant, scopes=["gateway"])).models.list()]
    assert "default" in ids, ids[-3:]
    assert "ollama:llama3:8b" in ids, ids[-3:]
    assert "ollama:qwen2.5:7b" not in ids, ids[-3:]


def test_a_saved_groq_key_reaches_groq(gateway_url, fake, tenant, make_key, manage_client, monkeypatch):
    """A tenant's Groq key (BYOK) calls Groq's OpenAI-compatible API with that key and Groq's model id, and the
    call is metered at the catalog's list price."""
    from decimal import Decimal

    for name in ("GROQ_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "GROQ_BASE_URL", fake.url + "/v1"
    )  # where Groq's https://api.groq.com/openai/v1 would be
    groq_key = "sk-test-groq-" + "7f3a9c2e5b1d"
    saved = manage_client.post("/api/llm/credentials", {"kind": "groq", "api_key": groq_key}, format="json")
    assert saved.status_code == 201, saved.content
    prefs = manage_client.post(
        "/api/llm/preferences", {"mode": "byok", "model": "groq:llama-3.3-70b"}, format="json"
    )
    assert prefs.status_code in (200, 201), prefs.content
    reconfigured()
    client = _client(gateway_url, make_key(tenant, scopes=["gateway"]))
    assert "groq:llama-3.3-70b" in [m.id for m in client.models.list()]

    reply = client.chat.completions.create(
        model="groq:llama-3.3-70b", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content.startswith("Hello from fake")
    path, headers, body = fake.requests[-1]
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {groq_key}"
    assert body["model"] == "llama-3.3-70b-versatile"
    chunks = list(
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.completion_tokens == 5
    assert fake.requests[-1][1]["authorization"] == f"Bearer {groq_key}"

    events = drain_events()
    assert len(events) == 2
    for event in events:
        assert (event.provider, event.model, event.mode, event.status) == (
            "groq",
            "groq:llama-3.3-70b",
            "byok",
            "ok",
        )
        assert (event.input_tokens, event.output_tokens) == (12, 5)
        # 12 × $0.59/1M + 5 × $0.79/1M
        assert event.cost_usd == Decimal("0.00001103")
