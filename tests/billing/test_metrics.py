"""Alert rules are valid Prometheus rules (promtool) and fire as intended; the TCU gauges billing provides and the
platform's revenue against its list cost (the margin alerts), per tenant and in total."""

import shutil
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from billing.caps import caps_update
from billing.managed import managed_set
from billing.metrics import collect_tenant_gauges, platform_margin
from billing.models import ManagedAgent, ManagedTier, Plan
from billing.plans import assign_plan
from billing.usage import period_bounds, period_of
from llm.models import UsageEvent, UsageWatermark
from llm.usage.rollups import rollup_hour, rollup_pending
from tenants.audit import SYSTEM
from tenants.services import agent_create

from .conftest import make_usage

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
PROMTOOL = "/usr/bin/promtool"


def _promtool() -> str:
    path = PROMTOOL if Path(PROMTOOL).exists() else shutil.which("promtool")
    if not path:
        pytest.fail(
            "promtool is missing: install Debian's `prometheus` package (apt-get install prometheus), "
            "which provides /usr/bin/promtool; .ci/run installs it."
        )
    return path


def test_alert_rules_pass_promtool_check_rules():
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_as_intended():
    cases = Path(__file__).with_name("prometheus_alerts_test.yml")
    result = subprocess.run(
        [_promtool(), "test", "rules", str(cases)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_use_the_agreed_metric_names():
    text = RULES.read_text()
    for name in (
        "byok_tcu_cap_ratio",
        "byok_platform_revenue_usd",
        "byok_platform_cost_usd",
        "byok_platform_total_revenue_usd",
        "byok_platform_total_cost_usd",
        "byok_requests_total",
        "byok_request_latency_seconds_bucket",
        "byok_ttft_seconds_bucket",
        "byok_alerts_sent_total",
    ):
        assert name in text


@pytest.mark.django_db
def test_collect_tenant_gauges_reports_usage_and_caps(tenant, other_tenant):
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=100, hard_tcu=1000)
    make_usage(tenant, tcu=250, tokens=10)
    gauges = {g.slug: g for g in collect_tenant_gauges()}
    assert (gauges["acme"].tcu_used, gauges["acme"].ratios) == (250, {"warn": 2.5, "hard": 0.25})
    assert gauges["globex"].tcu_used == 0
    assert gauges["globex"].ratios == {}  # BYOK only, no cap of its own: nothing to approach


@pytest.mark.django_db
def test_the_guardrail_ratio_counts_platform_tcu_only(tenant, settings):
    from billing.plans import assign_plan

    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200, 400
    assign_plan(tenant=tenant, plan_slug="enterprise")
    make_usage(tenant, tcu=100, mode="platform")
    make_usage(tenant, tcu=5000, mode="byok")
    (gauges,) = collect_tenant_gauges()
    assert (gauges.tcu_used, gauges.platform_tcu_used) == (5100, 100)
    assert gauges.ratios == {"warn": 0.5, "hard": 0.25}


# --- the platform's margin ----------------------------------------------------------------------------------


def _scrape(client) -> dict[tuple[str, tuple], float]:
    """/metrics as (sample name, sorted labels) → value."""
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def _margin_of(samples, slug: str) -> tuple[float, float]:
    return (
        samples[("byok_platform_revenue_usd", (("tenant", slug),))],
        samples[("byok_platform_cost_usd", (("tenant", slug),))],
    )


_TENANT_LOSS = "Check its managed tiers' models and prices, its overage rate and its plan's price or markup against the providers' list prices."


def _assert_alerts(
    samples, tmp_path: Path, *, losing: dict[str, str] | None = None, minutes: int = 120
) -> None:
    """Prometheus, scraping these /metrics samples for two hours, raises PlatformTenantLosingMoney for exactly the
    tenants in `losing` (slug → loss shown) and no PlatformLosingMoney: the scraped margin gauges are fed to
    `promtool test rules` as input series."""
    series = [
        {
            "series": name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}",
            "values": f"{value}x{minutes}",
        }
        for (name, labels), value in samples.items()
        if name.startswith(("byok_platform_revenue", "byok_platform_cost", "byok_platform_total_"))
    ]
    tenant_alerts = [
        {
            "exp_labels": {"severity": "warning", "tenant": slug},
            "exp_annotations": {
                "summary": f"Tenant {slug} costs the platform {loss} USD more than it pays this period",
                "description": _TENANT_LOSS,
            },
        }
        for slug, loss in (losing or {}).items()
    ]
    cases = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": f"{minutes}m",
                        "alertname": "PlatformTenantLosingMoney",
                        "exp_alerts": tenant_alerts,
                    },
                    {"eval_time": f"{minutes}m", "alertname": "PlatformLosingMoney", "exp_alerts": []},
                ],
            }
        ],
    }
    path = tmp_path / "margin_cases.yml"
    path.write_text(yaml.safe_dump(cases))
    result = subprocess.run(
        [_promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _on_tier_all_period(tenant, tier: str, agent=None) -> None:
    """`agent` (None: the default agent) managed at `tier` since the start of this period: the whole month's price."""
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug=tier)
    ManagedAgent.objects.for_tenant(tenant).update(enabled_at=period_bounds(period_of())[0])


@pytest.mark.django_db
def test_a_managed_pro_tenant_with_modest_platform_usage_has_a_positive_margin_and_no_alert(
    client, tenant, other_tenant, tmp_path
):
    _on_tier_all_period(tenant, "pro")  # $10 a month, 5M tokens included
    make_usage(tenant, tokens=400_000, cost_usd=Decimal("0.36"))
    make_usage(tenant, tokens=600_000, cost_usd=Decimal("0.54"))
    samples = _scrape(client)
    assert _margin_of(samples, "acme") == (10.0, 0.9)
    assert _margin_of(samples, "globex") == (0.0, 0.0)
    assert samples[("byok_platform_total_revenue_usd", (("source", "managed"),))] == 10.0
    assert samples[("byok_platform_total_revenue_usd", (("source", "overage"),))] == 0.0
    assert samples[("byok_platform_total_cost_usd", ())] == 0.9
    _assert_alerts(samples, tmp_path)


@pytest.mark.django_db
def test_a_tenant_costing_more_than_it_pays_shows_a_negative_margin_and_the_alert_fires(
    client, tenant, other_tenant, tmp_path
):
    _on_tier_all_period(tenant, "pro")
    make_usage(tenant, tokens=200_000, cost_usd=Decimal("0.50"))
    _on_tier_all_period(other_tenant, "starter")  # $5 a month, 2M tokens included
    make_usage(other_tenant, tokens=1_500_000, cost_usd=Decimal("8.25"))  # a premium model at list price
    samples = _scrape(client)
    assert _margin_of(samples, "globex") == (5.0, 8.25)
    assert samples[("byok_platform_total_cost_usd", ())] == 8.75
    # globex's alert only: in total the platform still earns $15 against $8.75
    _assert_alerts(samples, tmp_path, losing={"globex": "3.25"})


@pytest.mark.django_db
def test_byok_and_custom_usage_is_neither_revenue_nor_cost(client, tenant, other_tenant, agent, tmp_path):
    _on_tier_all_period(tenant, "starter")
    make_usage(tenant, tokens=100_000, cost_usd=Decimal("0.10"))
    before = {m.slug: m for m in platform_margin()}
    make_usage(tenant, tokens=90_000_000, cost_usd=Decimal("400"), mode="byok", billed_usd=Decimal("480"))
    make_usage(tenant, tokens=5_000_000, cost_usd=Decimal("25"), mode="custom", agent=agent)
    make_usage(other_tenant, tokens=50_000_000, cost_usd=Decimal("300"), mode="byok")
    after = {m.slug: m for m in platform_margin()}
    assert after == before
    assert (after["acme"].revenue_usd, after["acme"].cost_usd) == (Decimal("5.00"), Decimal("0.10"))
    samples = _scrape(client)
    assert _margin_of(samples, "globex") == (0.0, 0.0)
    _assert_alerts(samples, tmp_path)


@pytest.mark.django_db
def test_revenue_prorates_tiers_and_adds_overage_a_platform_plan_and_markup(tenant, other_tenant, agent):
    period = "2025-04"  # 30 days
    pro, starter = ManagedTier.objects.get(slug="pro"), ManagedTier.objects.get(slug="starter")

    def at(day: int) -> datetime:
        return datetime(2025, 4, day, tzinfo=UTC)

    rows = ManagedAgent.objects.for_tenant(tenant)
    rows.create(agent=agent, tier=starter, enabled_at=at(1), ended_at=at(16))  # half the month: $2.50
    rows.create(agent=agent, tier=pro, enabled_at=at(16))  # the other half: $5.00
    rows.create(
        agent=None, tier=starter, enabled_at=datetime(2025, 3, 1, tzinfo=UTC), ended_at=at(1)
    )  # before
    make_usage(
        tenant, tokens=6_000_000, agent=agent, when=at(20), cost_usd=Decimal("3.10")
    )  # 1M over Pro: $3
    make_usage(
        tenant, tokens=9_000_000, agent=agent, when=datetime(2025, 5, 1, tzinfo=UTC), cost_usd=Decimal(9)
    )

    Plan.objects.create(slug="team", name="Team", price_per_agent_usd=Decimal(10), platform_allowed=True)
    sub = assign_plan(tenant=other_tenant, plan_slug="team")
    sub.quantity = 2  # two agents billed
    sub.save(update_fields=["quantity"])
    make_usage(other_tenant, tokens=1000, when=at(3), cost_usd=Decimal(5), billed_usd=Decimal(6))  # +20 %

    margins = {m.slug: m for m in platform_margin(period)}
    acme = margins["acme"]
    assert (acme.managed_usd, acme.overage_usd, acme.plan_usd, acme.markup_usd, acme.cost_usd) == (
        Decimal("7.50"),
        Decimal("3.00"),
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("3.10"),
    )
    globex = margins["globex"]
    assert (globex.revenue_usd, globex.plan_usd, globex.markup_usd, globex.cost_usd) == (
        Decimal("21.00"),
        Decimal("20.00"),
        Decimal("1.00"),
        Decimal("5.00"),
    )


@pytest.mark.django_db
def test_rolled_up_hours_and_live_events_are_each_counted_once(tenant):
    period = "2025-04"
    ManagedAgent.objects.for_tenant(tenant).create(
        agent=None, tier=ManagedTier.objects.get(slug="starter"), enabled_at=datetime(2025, 4, 1, tzinfo=UTC)
    )
    rolled = datetime(2025, 4, 10, 12, tzinfo=UTC)
    make_usage(tenant, tokens=1_500_000, when=rolled.replace(minute=30), cost_usd=Decimal("1.25"))
    make_usage(tenant, tokens=1_000_000, when=datetime(2025, 4, 20, tzinfo=UTC), cost_usd=Decimal("0.75"))
    before = platform_margin(period)
    rollup_hour(tenant_id=tenant.id, hour=rolled)
    after = platform_margin(period)
    assert after == before
    assert (after[0].cost_usd, after[0].overage_usd) == (
        Decimal("2.00"),
        Decimal("1.00"),
    )  # 0.5M over 2M at $2


@pytest.mark.django_db
def test_platform_margin_reads_every_tenant_in_a_fixed_number_of_queries(make_tenant):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            platform_margin()
        return len(ctx.captured_queries)

    def add_tenant(slug: str) -> None:
        t = make_tenant(slug)
        helper = agent_create(tenant=t, actor=SYSTEM, slug="helper", name="Helper")
        _on_tier_all_period(t, "pro", agent=helper)
        _on_tier_all_period(t, "starter")
        make_usage(t, tokens=1000, agent=helper, cost_usd=Decimal("0.01"))

    add_tenant("one")
    few = queries()
    for slug in ("two", "three", "four"):
        add_tenant(slug)
    assert queries() == few <= 6


# --- the margin's list cost is exact whatever the rollups' lag ---------------------------------------------------

APRIL = "2025-04"


def _april(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 4, day, hour, minute, tzinfo=UTC)


def _costs(period: str = APRIL) -> dict[str, Decimal]:
    return {m.slug: m.cost_usd for m in platform_margin(period)}


def _rolled_up_to(tenant, *, through: datetime) -> None:
    """The tenant's rollups and watermark as a rollup run ending at `through` leaves them, with the events there
    are now: every hour with events before `through` rolled up, the mark at the highest event id."""
    upto = UsageEvent.objects.unscoped().order_by("-id").values_list("id", flat=True).first() or 0
    events = UsageEvent.objects.for_tenant(tenant).filter(created_at__lt=through)
    for when in events.values_list("created_at", flat=True):
        rollup_hour(tenant_id=tenant.id, hour=when.replace(minute=0, second=0, microsecond=0), upto_id=upto)
    UsageWatermark(tenant=tenant, event_id=upto, through=through).save()


@pytest.mark.django_db
def test_an_event_drained_late_into_an_hour_already_rolled_up_is_counted(tenant):
    rolled = _april(10, 12)
    make_usage(tenant, tokens=1000, when=rolled.replace(minute=10), cost_usd=Decimal("1.00"))
    rollup_pending(now=_april(15))
    make_usage(tenant, tokens=1000, when=rolled.replace(minute=40), cost_usd=Decimal("0.25"))  # a late drain
    assert _costs() == {"acme": Decimal("1.25")}


@pytest.mark.django_db
def test_a_tenant_without_a_watermark_counts_every_event_of_the_period(tenant, other_tenant):
    # A rollup run that stopped after acme's transaction: globex has events below acme's mark, and no mark.
    make_usage(other_tenant, tokens=1000, when=_april(3), cost_usd=Decimal("0.40"))
    make_usage(tenant, tokens=1000, when=_april(10, 12, 30), cost_usd=Decimal("1.00"))
    make_usage(other_tenant, tokens=1000, when=_april(12), cost_usd=Decimal("0.60"))
    _rolled_up_to(tenant, through=_april(15))
    make_usage(other_tenant, tokens=1000, when=_april(14), cost_usd=Decimal("0.05"))  # drained since
    assert _costs() == {"acme": Decimal("1.00"), "globex": Decimal("1.05")}


@pytest.mark.django_db
def test_tenants_with_different_watermarks_each_count_their_own_events_past_them(tenant, other_tenant):
    make_usage(tenant, tokens=1000, when=_april(5), cost_usd=Decimal("1.00"))
    make_usage(tenant, tokens=1000, when=_april(11, 10, 30), cost_usd=Decimal("2.00"))
    make_usage(other_tenant, tokens=1000, when=_april(5), cost_usd=Decimal("0.10"))
    make_usage(other_tenant, tokens=1000, when=_april(11, 9, 30), cost_usd=Decimal("0.20"))
    _rolled_up_to(tenant, through=_april(15))
    _rolled_up_to(other_tenant, through=_april(8))  # lags: its 11 April event is past its mark, not acme's
    make_usage(other_tenant, tokens=1000, when=_april(6), cost_usd=Decimal("0.30"))  # late, below both marks
    make_usage(tenant, tokens=1000, when=_april(20), cost_usd=Decimal("4.00"))  # not rolled up yet
    make_usage(tenant, tokens=1000, when=datetime(2025, 5, 1, tzinfo=UTC), cost_usd=Decimal(9))  # next period
    assert _costs() == {"acme": Decimal("7.00"), "globex": Decimal("0.60")}


@pytest.mark.django_db
def test_the_margin_reads_in_a_fixed_number_of_queries_whatever_the_tenants_watermarks(make_tenant):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            platform_margin(APRIL)
        return len(ctx.captured_queries)

    def add_tenants(prefix: str) -> None:
        caught_up, lagging, unrolled = (make_tenant(f"{prefix}-{s}") for s in ("up", "lag", "new"))
        for t in (caught_up, lagging, unrolled):
            make_usage(t, tokens=1000, when=_april(5), cost_usd=Decimal("0.01"))
        _rolled_up_to(caught_up, through=_april(20))
        _rolled_up_to(lagging, through=_april(6))
        for t in (caught_up, lagging, unrolled):
            make_usage(t, tokens=1000, when=_april(7), cost_usd=Decimal("0.02"))

    add_tenants("one")
    few = queries()
    for prefix in ("two", "three", "four"):
        add_tenants(prefix)
    assert queries() == few <= 6
    assert set(_costs().values()) == {Decimal("0.03")}
