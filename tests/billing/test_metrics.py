"""Alert rules are valid Prometheus rules (promtool) and fire as intended; the TCU gauges billing provides."""

import shutil
import subprocess
from pathlib import Path

import pytest

from billing.caps import caps_update
from billing.metrics import collect_tenant_gauges
from tenants.audit import SYSTEM

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
        "byok_billed_usd_total",
        "byok_cost_usd_total",
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
