"""`POST /v1/messages` and `/v1/messages/count_tokens` driven by the official `anthropic` SDK, against a fake
Anthropic upstream (the request passed through natively) and a fake OpenAI-compatible upstream (translated):
plain, streamed, a tool-use round trip, token counts, errors in Anthropic's shape, metered exactly once."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.fakes.upstream import COUNTED_TOKENS
from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# Claude Code names models as Anthropic does; any gateway id works too.
UPSTREAMS = {
    "anthropic": ("claude-haiku-4-5-20251001", "ANTHROPIC", "", "anthropic:claude-haiku-4.5"),
    "openai_compat": ("openai:gpt-5-mini", "OPENAI", "/v1", "openai:gpt-5-mini"),
}


@pytest.fixture
def enterprise(tenant):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


@pytest.fixture(params=list(UPSTREAMS))
def upstream(request, fake, monkeypatch):
    model, prefix, suffix, metered = UPSTREAMS[request.param]
    monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
    monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    reconfigured()
    return request.param, model, metered


@pytest.fixture
def client(gateway_url, enterprise, make_key):
    return anthropic.Anthropic(
        base_url=gateway_url, api_key=make_key(enterprise, scopes=["gateway"]), max_retries=0, timeout=20
    )


def test_plain_message(client, upstream, fake):
    kind, model, metered = upstream
    reply = client.messages.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert reply.type == "message"
    assert reply.role == "assistant"
    assert reply.content[0].type == "text"
    assert reply.content[0].text == f"Hello from fake {kind}!"
    assert reply.stop_reason == "end_turn"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 5)
    (event,) = drain_events()
    assert (event.model, event.status, event.input_tokens, event.output_tokens) == (metered, "ok", 12, 5)
    assert event.cost_usd > 0
    sent = fake.requests[-1][2]
    if kind == "anthropic":
        assert sent["system"] == "Be brief."  # Anthropic's own request, as the client sent it
    else:
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


def test_streamed_message(client, upstream):
    kind, model, metered = upstream
    with client.messages.stream(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"Hello from fake {kind}!"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    (event,) = drain_events()
    assert (event.model, event.status, event.output_tokens) == (metered, "ok", 5)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_tool_use_round_trip(client, upstream, streamed):
    _, model, _ = upstream
    question = {"role": "user", "content": "Weather in Paris?"}
    ask = {"model": model, "max_tokens": 200, "tools": [WEATHER], "tool_choice": {"type": "any"}}
    if streamed:
        with client.messages.stream(**ask, messages=[question]) as stream:
            first = stream.get_final_message()
    else:
        first = client.messages.create(**ask, messages=[question])
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})
    answer = client.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 °C, sunny"}],
            },
        ],
    )
    assert answer.content[0].text.startswith("Hello from fake")
    assert len(drain_events()) == 2


def test_count_tokens_asks_anthropic_or_estimates(client, upstream):
    kind, model, _ = upstream
    counted = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hello there"}])
    if kind == "anthropic":
        assert counted.input_tokens == COUNTED_TOKENS
    else:
        assert 0 < counted.input_tokens < 20
    assert drain_events() == []  # counting is free: nothing metered


def test_anthropic_features_pass_through_to_anthropic(client, fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-platform")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    reconfigured()
    reply = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=2048,
        system=[{"type": "text", "text": "A long shared prefix", "cache_control": {"type": "ephemeral"}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"},
                    },
                ],
            }
        ],
        extra_headers={"anthropic-beta": "a-beta-nobody-knows-2099-01-01"},
    )
    assert reply.content[0].text.startswith("Hello from fake")
    path, headers, sent = fake.requests[-1]
    assert path == "/v1/messages"
    assert headers["anthropic-beta"] == "a-beta-nobody-knows-2099-01-01"
    assert headers["x-api-key"] == "sk-test-platform"  # the platform's key, never the client's
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["messages"][0]["content"][1]["source"]["data"] == "iVBORw0"


def test_auth_headers_and_errors_in_anthropics_shape(gateway_url, enterprise, make_key, fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    reconfigured()
    key = make_key(enterprise, scopes=["gateway"])
    ask = {"model": "openai:gpt-5-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
    bearer = anthropic.Anthropic(base_url=gateway_url, auth_token=key, max_retries=0)  # ANTHROPIC_AUTH_TOKEN
    assert bearer.messages.create(**ask).content[0].text.startswith("Hello from fake")
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic.Anthropic(base_url=gateway_url, api_key="byok-nope", max_retries=0).messages.create(**ask)
    assert denied.value.body["type"] == "error"
    assert denied.value.body["error"]["type"] == "authentication_error"
    client = anthropic.Anthropic(base_url=gateway_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(**{**ask, "model": "claude-nonexistent-9"})
    assert unknown.value.body["error"]["type"] == "invalid_request_error"
    raw = httpx.post(
        f"{gateway_url}/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "openai:gpt-5-mini", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert raw.status_code == 400
    assert raw.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: required, an integer of at least 1.",
        },
    }
    assert len(drain_events()) == 1  # only the one call that was answered


def test_a_chat_completions_client_cannot_smuggle_a_native_request(
    gateway_url, enterprise, make_key, fake, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-platform")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    reconfigured()
    answer = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {make_key(enterprise, scopes=['gateway'])}"},
        json={
            "model": "anthropic:claude-haiku-4.5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hi"}],
            "_anthropic": {"request": {"model": "claude-opus-4", "max_tokens": 100000, "messages": []}},
        },
    )
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1][2]
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["max_tokens"] == 10


def test_a_chat_completions_client_cannot_smuggle_a_responses_request(
    gateway_url, enterprise, make_key, fake, monkeypatch
):
    """The Responses ingress's key, sent by a chat client, is dropped too: OpenAI gets the chat call that was
    asked for, not a Responses request for another model."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    reconfigured()
    smuggled = {"model": "gpt-5", "max_output_tokens": 100000, "input": "Hi"}
    answer = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {make_key(enterprise, scopes=['gateway'])}"},
        json={
            "model": "openai:gpt-5-mini",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hi"}],
            "_responses": {"request": smuggled, "input": [{"role": "user", "content": "Hi"}]},
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"
    path, _, sent = fake.requests[-1][:3]
    assert path.endswith("/chat/completions"), path
    assert sent["model"] == "gpt-5-mini"
    assert "_responses" not in sent
    assert "input" not in sent


@pytest.mark.parametrize("mode", ["byok", "custom"])
def test_messages_and_responses_in_every_mode(
    gateway_url, tenant, make_key, manage_client, fake, monkeypatch, mode
):
    """BYOK (the tenant's own OpenAI key) and custom (its own OpenAI-compatible endpoint): the same two SDKs work,
    metered once each in that mode."""
    import openai

    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")  # where the tenant's own OpenAI key calls, here
    if mode == "byok":
        saved = manage_client.post(
            "/api/llm/preferences",
            {
                "mode": "byok",
                "model": "openai:gpt-5-mini",
                "api_key": "sk-test-tenant-0001",
                "api_key_provider": "openai",
            },
            format="json",
        )
    else:
        saved = manage_client.post(
            "/api/llm/preferences",
            {
                "mode": "custom",
                "model": "llama3:8b",
                "custom_endpoint": {"kind": "openai_compatible", "base_url": fake.url + "/v1"},
            },
            format="json",
        )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()
    key = make_key(tenant, scopes=["gateway"])
    message = anthropic.Anthropic(base_url=gateway_url, api_key=key, max_retries=0).messages.create(
        model="default", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].text == "Hello from fake openai_compat!"
    response = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0).responses.create(
        model="default", input="Hi"
    )
    # OpenAI's own API takes the Responses request as it is; an endpoint of the tenant's gets the bridge onto chat.
    expected = "openai_responses" if mode == "byok" else "openai_compat"
    assert response.output_text == f"Hello from fake {expected}!"
    events = drain_events()
    assert [e.mode for e in events] == [mode, mode]
    if mode == "byok":
        assert {fake_headers["authorization"] for _, fake_headers, _ in fake.requests} == {
            "Bearer sk-test-tenant-0001"
        }


def test_messages_and_responses_stop_at_the_hard_cap_like_any_call(
    gateway_url, enterprise, make_key, manage_client, fake, monkeypatch
):
    import openai

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    capped = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 1}, format="json")
    assert capped.status_code == 200, capped.content
    reconfigured()
    key = make_key(enterprise, scopes=["gateway"])
    sdk = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0)
    sdk.chat.completions.create(
        model="openai:gpt-5-mini", messages=[{"role": "user", "content": "Hi"}]
    )  # past 1 TCU
    fake.reset()
    with pytest.raises(anthropic.APIStatusError) as messages:
        anthropic.Anthropic(base_url=gateway_url, api_key=key, max_retries=0).messages.create(
            model="openai:gpt-5-mini", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        )
    assert messages.value.status_code == 402
    assert messages.value.body["error"]["type"] == "billing_error"
    assert "hard cap" in messages.value.body["error"]["message"]
    with pytest.raises(openai.APIStatusError) as responses:
        sdk.responses.create(model="openai:gpt-5-mini", input="Hi")
    assert responses.value.status_code == 402
    assert responses.value.body["code"] == "tcu_hard_cap_reached"
    assert fake.requests == []  # nothing reached the provider
    assert [e.cost_usd > 0 for e in drain_events()] == [True]  # the refused calls cost nothing
