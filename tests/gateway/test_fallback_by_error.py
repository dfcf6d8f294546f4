"""Fallbacks by error type, against a fault-injecting fake upstream speaking each provider's own error words: a
context window too small moves on to a target with a larger one (or fails naming the limit), a content policy
refusal falls back only where the route says so, a stream fails over before its first byte and never after."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from llm.models import Route
from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

# context windows in the catalog: gpt-5-mini 400,000 · claude-haiku-4.5 200,000 · gemini-2.5-flash 1,048,576
GPT, HAIKU, GEMINI = "openai:gpt-5-mini", "anthropic:claude-haiku-4.5", "google:gemini-2.5-flash"


@pytest.fixture
def gateway(gateway_url, tenant, make_key, fake, monkeypatch):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    for prefix, suffix in (("OPENAI", "/v1"), ("ANTHROPIC", ""), ("GOOGLE", "")):
        monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
        monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    reconfigured()
    return openai.OpenAI(
        base_url=gateway_url + "/v1", api_key=make_key(tenant, scopes=["gateway"]), max_retries=0, timeout=20
    )


def _route(tenant, name: str, models: list[str], **extra) -> str:
    Route.objects.for_tenant(tenant).create(
        tenant=tenant, name=name, targets=[{"model": m} for m in models], **extra
    )
    reconfigured()
    return f"route:{name}"


def _called(fake) -> list[str]:
    """The upstream models called, in order (OpenAI and Anthropic name it in the body, Gemini in the path)."""
    called = []
    for path, _, body in fake.requests:
        if path.startswith("/v1beta/models/"):
            called.append(path.split("/")[3].split(":")[0])
        elif isinstance(body, dict) and body.get("model"):
            called.append(body["model"])
    return called


def _ask(client, model: str, text: str, **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **extra)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_too_long_for_a_window_moves_on_to_a_larger_one(gateway, tenant, fake, streamed):
    route = _route(tenant, "long-docs", [GPT, HAIKU, GEMINI])
    if streamed:
        chunks = list(_ask(gateway, route, "overflow:gpt-5-mini " + "x" * 50, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = _ask(gateway, route, "overflow:gpt-5-mini " + "x" * 50).choices[0].message.content
    assert text == "Hello from fake gemini!"
    # Haiku's 200,000 tokens cannot hold what did not fit in 400,000: it is not called at all.
    assert _called(fake) == ["gpt-5-mini", "gemini-2.5-flash"]
    (event,) = drain_events()
    assert (event.model, event.status, event.fallback_depth) == (GEMINI, "ok", 2)


def test_too_long_for_every_window_fails_naming_the_limit(gateway, tenant, fake):
    route = _route(tenant, "short", [GEMINI, GPT])
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(gateway, route, "overflow:gemini-2.5-flash")
    error = refused.value.body
    assert error["code"] == "context_length_exceeded"
    assert "context window of google:gemini-2.5-flash (1,048,576 tokens)" in error["message"]
    assert "no other target of this route has a larger one" in error["message"]
    assert _called(fake) == ["gemini-2.5-flash"]
    (event,) = drain_events()
    assert (event.status, event.error_kind) == ("error", "context_length")


def test_content_policy_falls_back_only_where_the_route_says_so(gateway, tenant, fake):
    strict = _route(tenant, "strict", [GPT, HAIKU])
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(gateway, strict, "policy:gpt-5-mini")
    assert refused.value.body["code"] == "content_policy_violation"
    assert _called(fake) == ["gpt-5-mini"]
    fake.reset()
    lenient = _route(tenant, "lenient", [GPT, HAIKU], fallback_on=["content_policy"])
    reply = _ask(gateway, lenient, "policy:gpt-5-mini")
    assert reply.choices[0].message.content == "Hello from fake anthropic!"
    assert _called(fake) == ["gpt-5-mini", "claude-haiku-4-5"]


def test_fallback_on_is_part_of_the_route_api(manage_client, platform_allowed):
    created = manage_client.post(
        "/api/llm/routes",
        {"name": "r", "targets": [GPT, HAIKU], "fallback_on": ["content_policy"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["fallback_on"] == ["content_policy"]
    bad = manage_client.post(
        "/api/llm/routes", {"name": "s", "targets": [GPT], "fallback_on": ["everything"]}, format="json"
    )
    assert bad.status_code == 400
    assert "fallback_on" in bad.json()
    kept = manage_client.patch(f"/api/llm/routes/{created.json()['id']}", {"description": "d"}, format="json")
    assert kept.json()["fallback_on"] == ["content_policy"]
    assert "fallback_on" in manage_client.get("/api/llm/routes/export").content.decode()


def test_a_stream_fails_over_before_its_first_byte_and_never_after(
    gateway_url, gateway, tenant, fake, make_key
):
    from llm.models import Credential

    # Custom endpoints on the fake: the first answers 503 before any byte, the second cuts its stream midway.
    first = Credential.objects.for_tenant(tenant).create(
        tenant=tenant, kind="openai_compatible", name="down", base_url=f"{fake.url}/status/503/v1"
    )
    second = Credential.objects.for_tenant(tenant).create(
        tenant=tenant, kind="openai_compatible", name="up", base_url=f"{fake.url}/v1"
    )
    Route.objects.for_tenant(tenant).create(
        tenant=tenant,
        name="flaky",
        targets=[{"model": "llama", "credential": first.id}, {"model": "llama", "credential": second.id}],
    )
    Route.objects.for_tenant(tenant).create(
        tenant=tenant,
        name="cut",
        targets=[{"model": "cut", "credential": second.id}, {"model": "llama", "credential": second.id}],
    )
    reconfigured()
    chunks = list(_ask(gateway, "route:flaky", "Hi", stream=True))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hello from fake openai_compat!"
    )
    fake.reset()
    with httpx.stream(
        "POST",
        f"{gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {make_key(tenant, scopes=['gateway'])}"},
        json={"model": "route:cut", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=20,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    last = orjson.loads(lines[-1][6:])
    assert "error" in last  # the client is told, as the stream's last event
    assert _called(fake) == ["cut"]  # and no second provider is called once bytes went out
