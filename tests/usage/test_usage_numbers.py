"""`GET /api/llm/usage` numbers that hold up (#15 "Honest numbers"): connection tests apart from traffic, exact
totals whatever the rollup lag, p95 from the events, one row per model, the baseline comparison."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.utils import timezone

from llm.models import UsageEvent
from llm.usage.rollups import rollup_pending

pytestmark = pytest.mark.django_db

_ids = count(1)


def _event(tenant, *, ago=timedelta(minutes=5), **fields):
    values = {
        "model": "openai:gpt-5-mini",
        "provider": "openai",
        "mode": "byok",
        "latency_ms": 100,
        "input_tokens": 100,
        "output_tokens": 50,
        "cost_usd": Decimal("0.000125"),
        "tcu": 13,
    } | fields
    return UsageEvent.objects.unscoped().create(
        tenant=tenant, request_id=f"n{next(_ids)}", created_at=timezone.now() - ago, **values
    )


def test_connection_tests_are_counted_apart_from_traffic(manage_client, tenant):
    for ago in (timedelta(hours=3), timedelta(minutes=1)):
        _event(tenant, ago=ago, request_type="test", mode="platform", billed_usd=Decimal("0.0002"))
        _event(tenant, ago=ago, request_type="test", status="error", input_tokens=0, output_tokens=0)
    _event(tenant, ago=timedelta(hours=2))
    for rolled in (False, True):
        if rolled:
            rollup_pending()
        body = manage_client.get("/api/llm/usage?range=24h").json()
        assert body["totals"]["requests"] == 1, rolled
        assert body["totals"]["errors"] == 0
        assert body["totals"]["error_rate"] == 0.0
        assert sum(d["requests"] for d in body["by_day"]) == 1
        assert [m["requests"] for m in body["by_model"]] == [1]
        assert body["tests"]["requests"] == 4
        assert body["tests"]["errors"] == 2
        assert body["tests"]["billed_usd"] == pytest.approx(0.0004)


def test_platform_tests_stay_in_billing(tenant):
    from billing.usage import period_bounds, period_of, platform_tokens

    period = period_of()
    into_period = timezone.now() - period_bounds(period)[0]
    for ago in (into_period - timedelta(seconds=1), timedelta(seconds=1)):
        _event(tenant, ago=ago, request_type="test", mode="platform")
    assert platform_tokens(tenant_id=tenant.id, period=period) == 300
    rollup_pending()
    assert platform_tokens(tenant_id=tenant.id, period=period, fast=True) == 300


RANGES = ("24h", "7d", "30d", "all")


def _expected(tenant, rng: str) -> int:
    from llm.usage.selectors import RANGES as SPANS

    events = UsageEvent.objects.unscoped().filter(tenant=tenant).exclude(request_type="test")
    if SPANS[rng] is not None:
        events = events.filter(created_at__gte=timezone.now() - SPANS[rng])
    return events.count()


def _requests(client) -> dict[str, int]:
    return {rng: client.get(f"/api/llm/usage?range={rng}").json()["totals"]["requests"] for rng in RANGES}


def test_totals_are_exact_whatever_the_rollup_lag(manage_client, tenant):
    """Events the schedule has not rolled up yet (a backlog drained late, beat down for a while) count at once."""
    for hours in (50, 30, 5, 2):
        _event(tenant, ago=timedelta(hours=hours))
    rollup_pending(now=timezone.now() - timedelta(hours=4))  # beat stopped four hours ago
    for hours in (40, 20, 3, 1):  # drained after that rollup, into hours it had already rolled up
        for _ in range(3):
            _event(tenant, ago=timedelta(hours=hours, minutes=5))
    want = {rng: _expected(tenant, rng) for rng in RANGES}
    assert want == {"24h": 11, "7d": 16, "30d": 16, "all": 16}
    assert _requests(manage_client) == want
    rollup_pending()  # beat is back: the same figures, now from the rollups
    assert _requests(manage_client) == want
    _event(tenant, ago=timedelta(hours=26))  # one more late event, into a day rolled up whole
    assert _requests(manage_client)["all"] == 17
    rollup_pending()
    assert _requests(manage_client)["all"] == 17


def test_reconciliation_finds_no_drift_in_events_past_the_watermark(tenant):
    from billing.stripe.reconciliation import check_rollups
    from billing.usage import period_of

    _event(tenant, ago=timedelta(days=1, hours=1))
    rollup_pending()
    _event(tenant, ago=timedelta(days=1, hours=2))  # late: read live until the next rollup, not a drift
    period = period_of(timezone.now() - timedelta(days=1))
    assert check_rollups(period, repair=False) == []


def _true_p95(latencies: list[int]) -> int:
    ordered = sorted(latencies)
    return ordered[-(-95 * len(ordered) // 100) - 1]  # nearest rank


def test_p95_is_the_events_own_not_a_bucket_bound(manage_client, tenant):
    """~1,090 ms streams read as 2,000 ms and 160 ms calls as 250 ms when p95 was a histogram bucket's bound."""
    streams = [1050 + (i * 37) % 90 for i in range(40)]
    for i, ms in enumerate(streams):
        _event(tenant, ago=timedelta(hours=2 + i % 3), latency_ms=ms, model="anthropic:claude-sonnet-4.5")
    for i in range(20):
        _event(tenant, ago=timedelta(hours=1, minutes=i), latency_ms=160)
    for rolled in (False, True):
        if rolled:
            rollup_pending()
        body = manage_client.get("/api/llm/usage?range=24h").json()
        p95 = {m["model"]: m["p95_latency_ms"] for m in body["by_model"]}
        assert p95["openai:gpt-5-mini"] == 160, rolled
        assert abs(p95["anthropic:claude-sonnet-4.5"] - _true_p95(streams)) <= 0.05 * _true_p95(streams), (
            rolled
        )
        assert abs(body["totals"]["p95_latency_ms"] - _true_p95([*streams, *[160] * 20])) <= 60, rolled


def test_by_model_is_one_row_per_model_as_known_with_mode_and_provider(manage_client, tenant):
    from tests.browser.test_usage_numbers import _model_mix

    _model_mix(tenant)
    for rolled in (False, True):
        if rolled:
            rollup_pending()
        rows = manage_client.get("/api/llm/usage?range=7d").json()["by_model"]
        got = {(r["label"], r["mode"]): (r["requests"], r["errors"], r["provider_label"]) for r in rows}
        assert got == {
            ("GPT-5 Mini", "platform"): (3, 1, "OpenAI, OpenRouter"),
            ("GPT-5 Mini", "byok"): (1, 0, "OpenAI"),
            ("gpt-5", "custom"): (1, 0, "OpenAI-compatible endpoint"),
            ("gpt-5-mini", "custom"): (1, 0, "OpenAI-compatible endpoint"),
        }, rolled
        assert {r["model"] for r in rows} == {"openai:gpt-5-mini", "gpt-5", "gpt-5-mini"}


def test_24h_has_every_hour(manage_client, tenant):
    _event(tenant, ago=timedelta(hours=5))
    live = _event(tenant, ago=timedelta(seconds=1))
    rollup_pending()
    body = manage_client.get("/api/llm/usage?range=24h").json()
    assert len(body["by_hour"]) in (24, 25)
    assert sum(h["requests"] for h in body["by_hour"]) == 2
    hour = live.created_at.replace(minute=0, second=0, microsecond=0).isoformat()
    assert [h["requests"] for h in body["by_hour"] if h["hour"] == hour] == [1]
    assert "by_hour" not in manage_client.get("/api/llm/usage?range=7d").json()


def test_24h_hours_carry_their_latency_rolled_up_or_live(manage_client, tenant):
    """Each hour of the 24h view has its average and p95 latency, from the rollups' digests and from live events
    alike; an hour without calls has 0."""
    early = [_event(tenant, ago=timedelta(hours=5), latency_ms=ms) for ms in (100, 200, 300, 400)]
    rollup_pending()
    late = [_event(tenant, ago=timedelta(seconds=1), latency_ms=ms) for ms in (1000, 1000, 1000, 3000)]
    for event in [*early, *late]:
        event.refresh_from_db()
    for rolled in (False, True):
        if rolled:
            rollup_pending()
        hours = {h["hour"]: h for h in manage_client.get("/api/llm/usage?range=24h").json()["by_hour"]}
        for events, avg in ((early, 250.0), (late, 1500.0)):
            hour = hours[events[0].created_at.replace(minute=0, second=0, microsecond=0).isoformat()]
            assert hour["avg_latency_ms"] == avg, rolled
            assert abs(
                hour["p95_latency_ms"] - _true_p95([e.latency_ms for e in events])
            ) <= 0.05 * _true_p95([e.latency_ms for e in events]), rolled
        quiet = [h for h in hours.values() if not h["requests"]]
        assert quiet
        assert all(h["avg_latency_ms"] == 0 and h["p95_latency_ms"] == 0 for h in quiet)


@pytest.mark.parametrize(
    ("value", "places", "shown"),
    [
        (1180, 0, "1,180"),
        (1090.4, 0, "1,090"),
        ("2.5", 0, "3"),
        (1234567.891, 2, "1,234,567.89"),
        (None, 0, "—"),
    ],
)
def test_num_reads_as_people_write_numbers(value, places, shown):
    from llm.templatetags.money import num

    assert num(value, places) == shown


def _million_in_100k_out(tenant):
    _event(
        tenant,
        ago=timedelta(hours=2),
        input_tokens=1_000_000,
        output_tokens=100_000,
        cost_usd=Decimal("0.45"),  # gpt-5-mini: $0.25 + $0.20
    )


def test_baseline_is_what_the_calls_would_have_cost_on_sonnet(manage_client, tenant):
    _million_in_100k_out(tenant)
    _event(tenant, ago=timedelta(hours=1), request_type="test", input_tokens=10**6)  # not traffic
    for rolled in (False, True):
        if rolled:
            rollup_pending()
        baseline = manage_client.get("/api/llm/usage?range=7d").json()["baseline"]
        assert baseline == {
            "model": "anthropic:claude-sonnet-4.5",
            "name": "Claude Sonnet 4.5",
            "cost_usd": 4.5,  # 1M × $3 + 0.1M × $15
            "saving_usd": 4.05,
            "saving_pct": 90.0,
        }, rolled


def test_admins_move_the_baseline_in_django_admin(manage_client, client, tenant):
    from llm.models import CatalogModel, CostBaseline
    from tenants.models import User

    _million_in_100k_out(tenant)
    User.objects.create_superuser(email="root@example.com", password="correct-horse-battery-9")
    client.login(email="root@example.com", password="correct-horse-battery-9")
    response = client.post("/admin/llm/costbaseline/add/", {"model": "openai:gpt-5"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert client.get("/admin/llm/costbaseline/add/").status_code == 403  # one row: edit it
    gpt5 = CatalogModel.objects.get(pk="openai:gpt-5")
    baseline = manage_client.get("/api/llm/usage?range=7d").json()["baseline"]
    assert baseline["model"] == "openai:gpt-5"
    want = (1_000_000 * gpt5.input_usd_per_mtok + 100_000 * gpt5.output_usd_per_mtok) / 1_000_000
    assert baseline["cost_usd"] == pytest.approx(float(want))
    CostBaseline.objects.all().delete()  # none set: the platform default
    assert (
        manage_client.get("/api/llm/usage?range=7d").json()["baseline"]["model"]
        == "anthropic:claude-sonnet-4.5"
    )
    CatalogModel.objects.filter(pk="anthropic:claude-sonnet-4.5").update(input_usd_per_mtok=None)
    assert manage_client.get("/api/llm/usage?range=7d").json()["baseline"] is None  # unpriced: no comparison
