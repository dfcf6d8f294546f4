"""`GET /api/llm/usage`: the same figures before and after rollups, ranges, agent filter, p95."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from llm.models import UsageDaily, UsageEvent, UsageHourly
from llm.usage.rollups import rollup_pending
from llm.usage.selectors import usage_summary

pytestmark = pytest.mark.django_db


def _event(
    tenant,
    n,
    *,
    ago,
    model="anthropic:claude-sonnet-4.5",
    agent=None,
    status="ok",
    latency=100,
    tokens=(100, 50),
    cost="0.001050",
    tcu=105,
):
    return UsageEvent.objects.unscoped().create(
        tenant=tenant,
        request_id=f"r{n}",
        created_at=timezone.now() - ago,
        agent=agent,
        model=model,
        provider=model.split(":")[0],
        mode="byok",
        status=status,
        latency_ms=latency,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=Decimal(cost),
        tcu=tcu,
    )


@pytest.fixture
def history(tenant, agent):
    n = 0
    for days_ago in (0, 1, 2, 5, 20, 60):
        for i in range(3):
            n += 1
            _event(
                tenant,
                n,
                ago=timedelta(days=days_ago, minutes=10 + i),
                agent=agent if i == 0 else None,
                status="error" if i == 2 else "ok",
                latency=100 * (i + 1),
            )
    n += 1
    _event(tenant, n, ago=timedelta(hours=1), model="openai:gpt-5-mini", latency=3000)
    return n


def test_totals_by_model_day_and_agent(manage_client, history, agent):
    body = manage_client.get("/api/llm/usage?range=30d").json()
    totals = body["totals"]
    assert body["range"] == "30d"
    assert totals["requests"] == 5 * 3 + 1  # the 60-day-old events are outside the range
    assert totals["errors"] == 5
    assert totals["error_rate"] == round(5 / 16, 4)
    assert totals["input_tokens"] == 1600
    assert totals["output_tokens"] == 800
    assert totals["tcu"] == 16 * 105
    assert totals["p95_latency_ms"] == 3000  # 1 of 16 calls (> 5 %) took 3 s
    models = {m["model"]: m["requests"] for m in body["by_model"]}
    assert models == {"anthropic:claude-sonnet-4.5": 15, "openai:gpt-5-mini": 1}
    agents = {a["agent"]: a["requests"] for a in body["by_agent"]}
    assert agents == {agent.slug: 5, None: 11}
    assert sum(d["requests"] for d in body["by_day"]) == 16


RANGES = ("24h", "7d", "30d", "90d", "all")


def test_rollups_do_not_change_the_figures(manage_client, history, tenant):
    from django.db.models import Sum

    before = {rng: manage_client.get(f"/api/llm/usage?range={rng}").json() for rng in RANGES}
    assert rollup_pending() > 0
    assert UsageDaily.objects.unscoped().filter(tenant=tenant).exists()
    assert UsageHourly.objects.unscoped().filter(tenant=tenant).exists()
    hourly_total = UsageHourly.objects.unscoped().filter(tenant=tenant).aggregate(n=Sum("requests"))["n"]
    this_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    assert (
        hourly_total == UsageEvent.objects.unscoped().filter(tenant=tenant, created_at__lt=this_hour).count()
    )
    for rng in RANGES:
        assert manage_client.get(f"/api/llm/usage?range={rng}").json() == before[rng], rng
    assert before["all"]["totals"]["requests"] == 19
    rollup_pending()  # running again is safe
    for rng in RANGES:
        assert manage_client.get(f"/api/llm/usage?range={rng}").json() == before[rng], rng


def test_agent_filter(manage_client, history, agent):
    body = manage_client.get(f"/api/llm/usage?range=90d&agent={agent.slug}").json()
    assert body["totals"]["requests"] == 6


def test_24h_range(manage_client, history):
    body = manage_client.get("/api/llm/usage?range=24h").json()
    assert body["totals"]["requests"] == 4


def test_unknown_range_is_a_field_error(manage_client):
    response = manage_client.get("/api/llm/usage?range=1y")
    assert response.status_code == 400
    assert "range" in response.json()


def test_another_tenants_agent_is_404(manage_client, other_tenant):
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    agent_create(tenant=other_tenant, actor=SYSTEM, slug="theirs")
    assert manage_client.get("/api/llm/usage?agent=theirs").status_code == 404


def test_other_tenant_sees_none_of_it(other_client, history):
    body = other_client.get("/api/llm/usage?range=all").json()
    assert body["totals"]["requests"] == 0


def test_fast_platform_tokens_equal_the_exact_sum(tenant):
    from billing.usage import period_of, platform_tokens

    n = 0
    for hours_ago in (0, 1, 3, 30, 60, 200):
        for mode in ("platform", "byok"):
            n += 1
            event = _event(tenant, 1000 + n, ago=timedelta(hours=hours_ago), tokens=(100 + n, 10 * n))
            UsageEvent.objects.unscoped().filter(id=event.id).update(mode=mode)
    period = period_of()
    exact = platform_tokens(tenant_id=tenant.id, period=period)
    assert exact > 0
    assert platform_tokens(tenant_id=tenant.id, period=period, fast=True) == exact
    rollup_pending()
    assert platform_tokens(tenant_id=tenant.id, period=period, fast=True) == exact


def test_cache_and_reasoning_tokens_are_shown_apart_before_and_after_rollups(manage_client, tenant):
    for n, ago in enumerate((timedelta(days=3), timedelta(minutes=5)), start=1):
        event = _event(tenant, n, ago=ago, tokens=(1000, 400))
        event.cached_tokens, event.cache_write_tokens, event.reasoning_tokens = 600, 100, 150
        event.save()
    before = manage_client.get("/api/llm/usage?range=30d").json()
    expected = {"cache_read_tokens": 1200, "cache_write_tokens": 200, "reasoning_tokens": 300}
    assert {k: before["totals"][k] for k in expected} == expected
    assert {k: before["by_model"][0][k] for k in expected} == expected
    assert rollup_pending() > 0
    assert manage_client.get("/api/llm/usage?range=30d").json() == before


def test_a_day_whose_last_calls_came_early_is_still_counted_after_rollups(tenant):
    """The newest hourly row can end before the newest whole day does (no call in that day's later hours): the
    day is read from its hours then, not lost between the daily rows and the live events."""
    now = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)
    for n, at in enumerate(
        (datetime(2026, 11, 28, 2, 27, tzinfo=UTC), datetime(2026, 12, 1, 2, 22, tzinfo=UTC))
    ):
        _event(tenant, n, ago=timezone.now() - at)
    before = usage_summary(tenant=tenant, range_name="30d", now=now)
    assert before["totals"]["requests"] == 2
    assert rollup_pending(now=now) > 0
    assert usage_summary(tenant=tenant, range_name="30d", now=now) == before


def test_the_baseline_comparison_prices_cache_reads_and_writes_as_the_calls_had_them(manage_client, tenant):
    event = _event(tenant, 1, ago=timedelta(hours=1), model="openai:gpt-5-mini", tokens=(10**6, 10**5))
    event.cached_tokens, event.cache_write_tokens = 600_000, 100_000
    event.save()
    baseline = manage_client.get("/api/llm/usage?range=7d").json()["baseline"]
    # Claude Sonnet 4.5: 300k × $3 + 600k read × $0.30 + 100k written × $3.75 + 100k out × $15
    assert baseline["cost_usd"] == pytest.approx(2.955)
