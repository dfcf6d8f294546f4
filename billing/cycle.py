"""The billing cycle (what beat runs and `run_billing_cycle` does): rollups, alerts, overage push, reconciliation."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from billing.alerts import alerts_check
from billing.stripe.client import stripe_configured
from billing.stripe.ledger import overage_push, tenants_to_push
from billing.stripe.reconciliation import previous_period, reconcile
from billing.subscriptions import period_bounds, period_of
from llm.metering.queue import flush
from llm.usage.rollups import rollup_pending
from tenants.models import Tenant

log = logging.getLogger(__name__)
CLOSING_DAYS = 3  # the previous period is pushed again during the first days of a month (late events)


def billing_cycle_run(*, period: str | None = None, reconciliation: bool = True) -> dict[str, Any]:
    """Run every step for one period; each step is idempotent, so running twice changes nothing more."""
    current = period_of()
    period = period or current
    period_bounds(period)  # validates
    report: dict[str, Any] = {"period": period}
    report["drained"] = _drain() if period == current else 0
    report["rolled_up"] = _rollups()
    report["alerts"] = _alerts(period) if period == current else {}
    pushes = (
        [overage_push(tenant=t, period=period) for t in tenants_to_push(period)]
        if stripe_configured()
        else []
    )
    report["pushes"] = {r.action: sum(1 for x in pushes if x.action == r.action) for r in pushes}
    report["push_failures"] = [f"{r.tenant_id}: {r.message}" for r in pushes if r.action == "failed"]
    if reconciliation:
        run = reconcile(period=period)
        report["reconciliation"] = {"issues_found": run.issues_found, "issues_repaired": run.issues_repaired}
    log.info("billing cycle %s: %s", period, report)
    return report


def periods_due() -> list[str]:
    """The current period, and the previous one while it is closing."""
    current = period_of()
    if datetime.now(UTC).day <= CLOSING_DAYS:
        return [previous_period(current), current]
    return [current]


def _drain() -> int:
    return int(flush() or 0)


def _rollups() -> int:
    return int(rollup_pending() or 0)


def _alerts(period: str) -> dict[str, list[str]]:
    sent = {}
    for tenant in Tenant.objects.filter(is_active=True).order_by("id"):
        if names := alerts_check(tenant=tenant, period=period):
            sent[tenant.slug] = names
    return sent
