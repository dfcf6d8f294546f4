"""TCU caps through the real gateway: the platform's guardrail counts and stops platform-managed calls only; a
tenant's own cap counts and stops every call; a BYOK tenant with no cap of its own is never stopped."""

from __future__ import annotations

import time

import httpx
import pytest
from django.db.models import Sum

from llm.limits import budget
from llm.models import UsageEvent
from tests.conftest import clear_redis_namespace
from tests.gateway.conftest import drain_events, reconfigured
from tests.gateway.test_trust_core import counters_at_rest

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai:gpt-5-mini"  # catalog price 0.25 / 2 USD per 1M tokens
BIG = (1_000_000, 1_000_000)  # what the fake reports per call: $2.25 of list cost = 225,000 TCU
CALL_TCU = 225_000


@pytest.fixture
def provider(monkeypatch, fake, settings):
    """The fake as OpenAI, for the platform's key and the tenant's own alike; every call reports BIG usage."""
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    for name in ("OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    fake.usage = BIG
    return fake


def _byok(manage_client, agent: str | None = None) -> None:
    """The workspace (or an agent) calls OpenAI with the tenant's own key."""
    saved = manage_client.post(
        "/api/llm/credentials", {"kind": "openai", "api_key": "sk-test-tenant-" + "4c1d"}, format="json"
    )
    assert saved.status_code == 201, saved.content
    prefs = manage_client.post("/api/llm/preferences", {"mode": "byok", "model": MODEL}, format="json")
    assert prefs.status_code in (200, 201), prefs.content


def _platform_agent(manage_client, agent) -> None:
    prefs = manage_client.post(
        f"/api/llm/preferences?agent={agent.slug}", {"mode": "platform", "model": MODEL}, format="json"
    )
    assert prefs.status_code in (200, 201), prefs.content


def _call(gateway_url: str, key: str) -> httpx.Response:
    return httpx.post(
        gateway_url + "/v1/chat/completions",
        json={"model": "default", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _modes_used() -> dict[str, int]:
    rows = UsageEvent.objects.unscoped().values("mode").annotate(t=Sum("tcu"))
    return {row["mode"]: int(row["t"]) for row in rows}


def test_a_byok_tenant_without_a_cap_of_its_own_keeps_working_far_past_300000_tcu(
    gateway_url, provider, tenant, make_key, manage_client
):
    _byok(manage_client)
    reconfigured()
    key = make_key(tenant, scopes=["gateway"])
    for _ in range(5):
        response = _call(gateway_url, key)
        assert response.status_code == 200, response.text
    counters_at_rest(tenant.id)
    assert budget.used_tcu(tenant_id=tenant.id) == 5 * CALL_TCU  # 1,125,000: counted for its own view
    assert budget.platform_used_tcu(tenant_id=tenant.id) == 0
    drain_events()
    assert _modes_used() == {"byok": 5 * CALL_TCU}
    summary = manage_client.get("/api/billing/summary").json()
    assert (summary["tcu_used"], summary["hard_tcu"], summary["banner"]) == (5 * CALL_TCU, None, None)


def test_the_same_byok_tenant_with_an_own_cap_is_stopped_by_it(
    gateway_url, provider, tenant, make_key, manage_client
):
    _byok(manage_client)
    capped = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 300_000}, format="json")
    assert capped.status_code == 200, capped.content
    reconfigured()
    key = make_key(tenant, scopes=["gateway"])
    assert [_call(gateway_url, key).status_code for _ in range(2)] == [200, 200]
    refused = _call(gateway_url, key)
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "tcu_hard_cap_reached")
    assert "Your workspace's monthly TCU hard cap reached: 450,000 of 300,000 TCU" in error["message"]
    assert "UTC" in error["message"]
    counters_at_rest(tenant.id)
    drain_events()
    assert _modes_used() == {"byok": 2 * CALL_TCU}  # the refused call cost nothing


def test_a_platform_call_is_stopped_by_the_guardrail_while_a_byok_call_still_passes(
    gateway_url, provider, tenant, agent, make_key, manage_client
):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")  # platform-managed models, guardrail 300,000 TCU
    _byok(manage_client)  # the workspace: its own key
    _platform_agent(manage_client, agent)  # this agent: the platform's key
    reconfigured()
    byok_key = make_key(tenant, scopes=["gateway"])
    platform_key = make_key(tenant, scopes=["gateway"], agent=agent)

    # BYOK spend first, far past the guardrail's figures: the guardrail does not count it
    for _ in range(3):
        assert _call(gateway_url, byok_key).status_code == 200
    assert [_call(gateway_url, platform_key).status_code for _ in range(2)] == [200, 200]
    refused = _call(gateway_url, platform_key)
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "tcu_hard_cap_reached")
    assert "guardrail on platform-managed models reached: 450,000 of 300,000 TCU" in error["message"]
    assert "BYOK" in error["message"]
    assert "UTC" in error["message"]

    assert _call(gateway_url, byok_key).status_code == 200  # same tenant, same period
    counters_at_rest(tenant.id)
    assert budget.platform_used_tcu(tenant_id=tenant.id) == 2 * CALL_TCU
    assert budget.used_tcu(tenant_id=tenant.id) == 6 * CALL_TCU

    # Redis loses everything: the guardrail's counter rebuilds from PostgreSQL, platform rows only
    drain_events()
    assert _modes_used() == {"byok": 4 * CALL_TCU, "platform": 2 * CALL_TCU}
    clear_redis_namespace()
    assert _call(gateway_url, platform_key).status_code == 402
    assert _call(gateway_url, byok_key).status_code == 200
    counters_at_rest(tenant.id)
    assert budget.platform_used_tcu(tenant_id=tenant.id) == 2 * CALL_TCU
    assert budget.used_tcu(tenant_id=tenant.id) == 7 * CALL_TCU

    summary = manage_client.get("/api/billing/summary").json()
    assert (summary["platform_tcu_used"], summary["platform_hard_tcu"]) == (2 * CALL_TCU, 300_000)
    assert summary["banner"]["code"] == "guardrail"


def test_an_own_cap_below_the_guardrail_stops_platform_calls_sooner_and_byok_ones_too(
    gateway_url, provider, tenant, agent, make_key, manage_client
):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    _byok(manage_client)
    _platform_agent(manage_client, agent)
    capped = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 200_000}, format="json")
    assert capped.status_code == 200, capped.content
    reconfigured()
    platform_key = make_key(tenant, scopes=["gateway"], agent=agent)
    assert _call(gateway_url, platform_key).status_code == 200
    refused = _call(gateway_url, platform_key)  # 225,000 < the guardrail's 300,000, past the own 200,000
    assert refused.status_code == 402
    assert "Your workspace's monthly TCU hard cap" in refused.json()["error"]["message"]
    assert _call(gateway_url, make_key(tenant, scopes=["gateway"])).status_code == 402
    counters_at_rest(tenant.id)


def test_an_own_cap_above_the_guardrail_does_not_raise_it(
    gateway_url, provider, tenant, agent, make_key, manage_client
):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    _byok(manage_client)
    _platform_agent(manage_client, agent)
    capped = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 10**12}, format="json")
    assert capped.status_code == 200, capped.content
    reconfigured()
    platform_key = make_key(tenant, scopes=["gateway"], agent=agent)
    assert [_call(gateway_url, platform_key).status_code for _ in range(3)] == [200, 200, 402]
    assert "guardrail" in _call(gateway_url, platform_key).json()["error"]["message"]
    counters_at_rest(tenant.id)


def test_the_monthly_request_cap_counts_the_calendar_month_of_the_billing_period(
    gateway_url, provider, tenant, make_key, manage_client, monkeypatch
):
    """Not a rolling 31-day window: the count lives in the month's own bucket, which ends with the month, and the
    next month starts from zero."""
    from billing import caps
    from billing.models import Plan

    provider.usage = (10, 5)
    _byok(manage_client)
    Plan.objects.filter(slug="free").update(monthly_request_cap=2)
    caps.invalidate_all()
    reconfigured()
    key = make_key(tenant, scopes=["gateway"])
    started = time.time()
    assert [_call(gateway_url, key).status_code for _ in range(2)] == [200, 200]
    refused = _call(gateway_url, key)
    assert refused.status_code == 429
    assert "2 requests this month" in refused.json()["error"]["message"]

    month = budget.period_of()
    bucket = f"{budget.NS}:rl:monthly:{tenant.id}:{month}"
    client = budget.backend().sync_client()
    assert int(client.get(bucket)) == 2
    _, month_end = budget.period_bounds(month)
    # Gone an hour after the month ends. The gateway computes the TTL in whole seconds (after `started`) and Redis
    # starts it a moment later, then reports it rounded to the nearest second. That moment was over a second on a
    # loaded machine, so the upper bound counts from `started`, not from now.
    ttl = client.ttl(bucket)
    assert month_end.timestamp() - time.time() + 3600 - 2 <= ttl <= month_end.timestamp() - started + 3600 + 1

    next_month = budget.period_of(month_end)
    monkeypatch.setattr(budget, "period_of", lambda dt=None: next_month)
    assert _call(gateway_url, key).status_code == 200  # a new calendar month: a new count
    assert int(client.get(f"{budget.NS}:rl:monthly:{tenant.id}:{next_month}")) == 1
    counters_at_rest(tenant.id)


def _custom(manage_client, fake, *, price: int, cache_write_price: int | None = None) -> None:
    """The workspace calls its own OpenAI-compatible server (the fake) at `price` USD per 1M tokens each way (and
    cache writes at `cache_write_price`; None: the input price)."""
    saved = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "llama3:8b",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": fake.url + "/v1",
                "input_usd_per_mtok": price,
                "output_usd_per_mtok": price,
                "cache_write_usd_per_mtok": cache_write_price,
            },
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()


def test_a_hard_cap_of_zero_refuses_paid_calls_but_never_calls_that_cost_nothing(
    gateway_url, provider, tenant, make_key, manage_client
):
    """A hard cap limits spend: a call to the tenant's own free endpoint spends nothing, so a cap of 0 (or one
    already reached) does not stop it; the same endpoint with a price is stopped."""
    capped = manage_client.put(
        "/api/billing/caps", {"warn_tcu": 0, "hard_tcu": 0, "confirm": True}, format="json"
    )
    assert capped.status_code == 200, capped.content
    _custom(manage_client, provider, price=0)
    key = make_key(tenant, scopes=["gateway"])
    assert [_call(gateway_url, key).status_code for _ in range(2)] == [200, 200]
    counters_at_rest(tenant.id)
    _custom(manage_client, provider, price=1)
    refused = _call(gateway_url, key)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "tcu_hard_cap_reached"
    counters_at_rest(tenant.id)
    _custom(manage_client, provider, price=0, cache_write_price=1)  # free but for its prompt-cache writes
    assert _call(gateway_url, key).status_code == 402
    counters_at_rest(tenant.id)
    drain_events()
    assert _modes_used() == {"custom": 0}
