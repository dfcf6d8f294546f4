"""The OpenAI-compatible gateway through the official `openai` SDK against fake providers over HTTP."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai:gpt-5-mini"  # catalog price 0.25 / 2 USD per 1M tokens


@pytest.fixture
def platform_env(monkeypatch, fake):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-platform")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    for name in ("OPENROUTER_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pro_tenant(tenant):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


@pytest.fixture
def sdk(gateway_url, pro_tenant, make_key, platform_env):
    key = make_key(pro_tenant, scopes=["gateway"])
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)


def test_chat_completion_through_the_sdk_is_metered_once(sdk, fake, pro_tenant):
    raw = sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("Hello from fake")
    assert completion.usage.prompt_tokens == 12
    assert completion.usage.completion_tokens == 5
    request_id = raw.headers["x-request-id"]
    events = drain_events()
    assert len(events) == 1
    event = events[0]
    assert event.request_id == request_id
    assert event.tenant_id == pro_tenant.id
    assert (event.mode, event.provider, event.model, event.status) == ("platform", "openai", MODEL, "ok")
    assert (event.input_tokens, event.output_tokens) == (12, 5)
    assert event.cost_usd == Decimal("0.00001300")  # 12 × 0.25/1M + 5 × 2/1M
    assert event.tcu == 2  # ceil(0.000013 / 0.00001)
    assert event.billed_usd >= event.cost_usd
    upstream = [r for r in fake.requests if r[0].endswith("/chat/completions")]
    assert upstream[-1][2]["model"] == "gpt-5-mini"
    assert upstream[-1][1].get("authorization") == "Bearer sk-test-platform"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # aiohttp's own jar refuses IP hosts' cookies
def test_cookies_an_upstream_sets_are_never_sent_back(
    gateway_url, pro_tenant, other_tenant, make_key, platform_env, fake, monkeypatch, host
):
    """Providers set cookies (Cloudflare's `__cf_bm` on api.openai.com; the fake sets one on every answer). The
    pooled upstream client serves every tenant, so a kept cookie would tie one tenant's calls to another's at the
    provider: none is kept or sent, streamed or not."""
    from billing.plans import assign_plan

    monkeypatch.setenv("OPENAI_BASE_URL", f"http://{host}:{fake.port}/v1")
    assign_plan(tenant=other_tenant, plan_slug="enterprise")
    for tenant in (pro_tenant, other_tenant):
        client = openai.OpenAI(
            base_url=gateway_url + "/v1",
            api_key=make_key(tenant, scopes=["gateway"]),
            max_retries=0,
            timeout=20,
        )
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}]
        )
        assert "set-cookie" not in raw.headers  # nor is the provider's cookie handed to the client
        assert list(
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )
    calls = [headers for path, headers, _ in fake.requests if path.endswith("/chat/completions")]
    assert len(calls) == 4
    assert [headers.get("cookie") for headers in calls] == [None] * 4


def test_stream_with_usage_reassembles_and_meters(sdk):
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from fake")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    events = drain_events()
    assert len(events) == 1
    assert events[0].output_tokens == 5
    assert not events[0].tokens_estimated
    assert events[0].ttft_ms is not None


def test_stream_without_include_usage_has_no_usage_chunk(sdk):
    chunks = list(
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)
    )
    assert all(c.usage is None for c in chunks)
    assert len(drain_events()) == 1  # still metered from the upstream's usage


def test_embeddings(sdk):
    result = sdk.embeddings.create(model="openai:text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 8
    events = drain_events()
    assert events[-1].request_type == "embedding"
    assert events[-1].input_tokens == 6


def test_models_lists_what_the_key_may_call(sdk):
    ids = {m.id for m in sdk.models.list()}
    assert "default" in ids
    assert MODEL in ids


def test_models_lists_only_eu_hosted_models_once_the_tenant_asks_for_eu_residency(
    sdk, manage_client, monkeypatch
):
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-test-platform")  # the platform reaches Mistral's EU models
    reconfigured()
    saved = manage_client.post(
        "/api/llm/preferences",
        {"mode": "platform", "model": "mistral:mistral-large", "eu_only": True},
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()
    ids = {m.id for m in sdk.models.list()} - {"default"}
    assert "mistral:mistral-large" in ids
    assert MODEL not in ids
    assert all(i.startswith(("mistral:", "cohere:")) for i in ids), ids


def test_missing_and_bad_keys_are_401_with_request_ids(gw):
    first = gw.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
    second = gw.post("/v1/chat/completions", json={}, headers={"Authorization": "Bearer byok-nope"})
    for response in (first, second):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_revoked_key_stops_working(gateway_url, pro_tenant, platform_env):
    from tenants.audit import SYSTEM
    from tenants.keys import apikey_create, apikey_revoke

    key, raw = apikey_create(tenant=pro_tenant, actor=SYSTEM, name="k", scopes=["gateway"])
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=raw, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    apikey_revoke(key=key, actor=SYSTEM)
    from llm.calls import hot_cache

    hot_cache.keys.clear()  # other workers forget within hot_cache.KEY_TTL seconds
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_bodies_are_400_in_openai_format(gw, sdk, body, param):
    response = gw.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {sdk.api_key}"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert drain_events() == []  # refused before anything was called


def test_unknown_model_is_400(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="nosuch:model", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "model"


def test_invalid_json_is_400(gw, sdk):
    response = gw.post(
        "/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {sdk.api_key}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_upstream_rejecting_the_platform_key_is_502_upstream_auth(sdk, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bad")
    reconfigured()
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_auth"
    assert "sk-bad" not in str(info.value.body)
    events = drain_events()
    assert len(events) == 1
    assert events[0].status == "error"
    assert events[0].error_kind == "auth"


def test_client_disconnect_mid_stream_records_estimated_output(gateway_url, sdk, fake):
    """The fake's `drip` model streams 50 chunks 50 ms apart; the client hangs up after a few."""
    import time

    from llm.config.versions import bump_config_version
    from llm.models import CatalogModel

    CatalogModel.objects.create(
        id="openai:drip",
        provider_id="openai",
        name="Drip",
        native_model_id="drip",
        input_usd_per_mtok=1,
        output_usd_per_mtok=1,
    )
    bump_config_version()
    reconfigured()
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST",
            gateway_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {sdk.api_key}"},
            json={"model": "openai:drip", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
        ) as response,
    ):
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith("data: ")
            if seen == 5:
                break  # hang up mid-stream
    deadline = time.time() + 5
    events = []
    while time.time() < deadline and not events:
        events = drain_events()
        time.sleep(0.1)
    assert len(events) == 1
    event = events[0]
    assert event.status == "client_closed"
    assert event.tokens_estimated
    assert event.input_tokens > 0
    assert 0 < event.output_tokens < 50
    time.sleep(0.3)
    assert len(drain_events()) == 1


@pytest.mark.parametrize(
    ("case", "stream"),
    [("slow", True), ("stall", True), ("slow", False)],
    ids=["stream-first-byte", "stream-pause", "no-stream"],
)
def test_a_hang_up_while_the_provider_is_silent_is_metered_at_once(gateway_url, sdk, fake, case, stream):
    """`slow` waits 3 s before its first byte, `stall` pauses 3 s after two pieces: the gateway does not wait for
    the provider to speak again before it closes the upstream request and meters the call."""
    import time

    from llm.config.versions import bump_config_version
    from llm.models import CatalogModel

    CatalogModel.objects.create(
        id=f"openai:{case}",
        provider_id="openai",
        name=case,
        native_model_id=case,
        input_usd_per_mtok=1,
        output_usd_per_mtok=1,
    )
    bump_config_version()
    reconfigured()
    request = {"model": f"openai:{case}", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client(timeout=httpx.Timeout(10, read=0.5)) as client:
        try:
            with client.stream(
                "POST",
                gateway_url + "/v1/chat/completions",
                json=request,
                headers={"Authorization": f"Bearer {sdk.api_key}"},
            ) as response:
                for _ in response.iter_lines():
                    pass
        except httpx.ReadTimeout:
            pass  # the client gives up on the silent stream and hangs up
    hung_up = time.monotonic()
    events = []
    while time.monotonic() < hung_up + 2.5 and not events:
        events = drain_events()
        time.sleep(0.05)
    assert events, "metered"
    assert time.monotonic() - hung_up < 1.5, "not after the provider spoke again (3 s)"
    event = events[0]
    assert event.status == "client_closed"
    assert event.tokens_estimated
    assert event.input_tokens > 0
    assert (event.output_tokens > 0) == (case == "stall")
    time.sleep(3)  # the provider's late chunks change nothing
    assert len(drain_events()) == 1


# --- routing: fallback, A/B, circuit breaker, EU residency, cache ------------------------------------------


def _route(tenant, name, targets, **kw):
    from llm.config.versions import bump_config_version
    from llm.models import Route

    route = Route.objects.unscoped().create(tenant=tenant, name=name, targets=targets, **kw)
    bump_config_version(tenant.id)
    return route


@pytest.fixture
def failing_anthropic(monkeypatch, fake):
    """Anthropic's platform base URL answers 503 to everything."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url + "/status/503")
    return fake


def test_fallback_answers_from_the_next_target(sdk, pro_tenant, failing_anthropic):
    _route(pro_tenant, "chat", [{"model": "anthropic:claude-haiku-4.5"}, {"model": MODEL}])
    completion = sdk.chat.completions.create(model="route:chat", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content.startswith("Hello from fake")
    event = drain_events()[-1]
    assert event.fallback_depth == 1
    assert event.model == MODEL
    assert event.route == "route:chat"


def test_no_failover_on_bad_request(sdk, pro_tenant, monkeypatch, fake):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url + "/status/400")
    _route(pro_tenant, "strict", [{"model": "anthropic:claude-haiku-4.5"}, {"model": MODEL}])
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="route:strict", messages=[{"role": "user", "content": "Hi"}])
    assert not [r for r in fake.requests if r[0] == "/v1/chat/completions"]


def test_every_target_failing_is_502_naming_the_provider(
    sdk, pro_tenant, failing_anthropic, monkeypatch, fake
):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/status/503/v1")
    _route(pro_tenant, "doomed", [{"model": "anthropic:claude-haiku-4.5"}, {"model": MODEL}])
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="route:doomed", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_unavailable"
    assert "openai" in info.value.body["message"]
    assert len(drain_events()) == 1


def test_upstream_rate_limit_after_fallbacks_is_429_with_retry_after(gw, sdk, pro_tenant, monkeypatch, fake):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/status/429/v1")
    response = gw.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {sdk.api_key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"] == "1"


def test_circuit_breaker_skips_a_failing_target(sdk, pro_tenant, failing_anthropic, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 3
    _route(pro_tenant, "cb", [{"model": "anthropic:claude-haiku-4.5"}, {"model": MODEL}])
    for _ in range(6):
        sdk.chat.completions.create(model="route:cb", messages=[{"role": "user", "content": "Hi"}])
    tried_anthropic = [r for r in failing_anthropic.requests if r[0].startswith("/status/503")]
    assert len(tried_anthropic) == 3  # opened after the third failure; the last three calls skipped it
    assert all(e.model == MODEL for e in drain_events())


def test_ab_split_uses_both_variants_and_records_them(sdk, pro_tenant, platform_env):
    _route(
        pro_tenant,
        "ab",
        [{"model": MODEL, "weight": 50}, {"model": "anthropic:claude-haiku-4.5", "weight": 50}],
    )
    for _ in range(30):
        sdk.chat.completions.create(model="route:ab", messages=[{"role": "user", "content": "Hi"}])
    variants = {e.variant for e in drain_events()}
    assert variants == {MODEL, "anthropic:claude-haiku-4.5"}


def test_response_cache_serves_a_hit_without_an_upstream_call(gw, sdk, pro_tenant, fake):
    _route(pro_tenant, "cached", [{"model": MODEL}], cache_ttl_seconds=60)
    body = {
        "model": "route:cached",
        "temperature": 0,
        "messages": [{"role": "user", "content": "Same question"}],
    }
    headers = {"Authorization": f"Bearer {sdk.api_key}"}
    first = gw.post("/v1/chat/completions", json=body, headers=headers)
    second = gw.post("/v1/chat/completions", json=body, headers=headers)
    assert (first.headers["x-byok-cache"], second.headers["x-byok-cache"]) == ("miss", "hit")
    assert second.json()["choices"] == first.json()["choices"]
    assert len([r for r in fake.requests if r[0] == "/v1/chat/completions"]) == 1
    hit = drain_events()[-1]
    assert hit.cached
    assert hit.cost_usd == 0
    assert hit.tcu == 0
    warm = gw.post("/v1/chat/completions", json={**body, "temperature": 0.7}, headers=headers)
    assert warm.headers["x-byok-cache"] == "miss"  # not deterministic: never from the cache


def test_eu_only_tenant_never_reaches_a_non_eu_model(sdk, pro_tenant):
    pro_tenant.eu_only = True
    pro_tenant.save(update_fields=["eu_only"])
    from llm.config.versions import bump_config_version

    bump_config_version(pro_tenant.id)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    _route(pro_tenant, "sneaky", [{"model": MODEL}])
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="route:sneaky", messages=[{"role": "user", "content": "Hi"}])
    assert drain_events() == []


# --- caps and limits ----------------------------------------------------------------------------------------


def test_hard_cap_refuses_with_402_until_raised(sdk, pro_tenant, manage_client):
    from billing.caps import caps_update
    from tenants.audit import SYSTEM

    caps_update(tenant=pro_tenant, actor=SYSTEM, warn_tcu=1, hard_tcu=1)
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])  # costs 2 TCU
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert info.value.status_code == 402
    assert info.value.body["type"] == "insufficient_quota"
    assert info.value.body["code"] == "tcu_hard_cap_reached"
    assert "2 of 1 TCU" in info.value.body["message"]
    assert "UTC" in info.value.body["message"]
    raised = manage_client.put("/api/billing/caps", {"warn_tcu": 100, "hard_tcu": 1000}, format="json")
    assert raised.status_code == 200
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])


def test_plan_rate_limit_is_429_with_retry_after(gw, sdk, pro_tenant):
    from billing.models import Plan
    from billing.plans import assign_plan

    Plan.objects.create(slug="tiny", name="Tiny", platform_allowed=True, rpm_tenant=2)
    assign_plan(tenant=pro_tenant, plan_slug="tiny")
    headers = {"Authorization": f"Bearer {sdk.api_key}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    statuses = [gw.post("/v1/chat/completions", json=body, headers=headers) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[-1].headers["retry-after"]) >= 1
    assert statuses[-1].json()["error"]["code"] == "rate_limit_exceeded"


def test_free_plan_cannot_use_platform_keys(gateway_url, tenant, make_key, platform_env):
    from llm.models import Preferences

    Preferences.objects.for_tenant(tenant).create(tenant=tenant, mode="platform", model=MODEL)
    reconfigured()
    client = openai.OpenAI(
        base_url=gateway_url + "/v1", api_key=make_key(tenant, scopes=["gateway"]), max_retries=0
    )
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert "BYOK" in info.value.body["message"]
