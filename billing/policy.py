"""Billing's implementation of the router's limits policy (`llm.policy.Policy`), registered at start-up."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from billing import caps, plans, summary

if TYPE_CHECKING:
    from tenants.models import Tenant


class BillingPolicy:
    # Module attributes, looked up at call time: tests replace `billing.plans.plan_allows_platform`.
    def limits_for(self, tenant_id: int) -> caps.Limits:
        return caps.limits_for(tenant_id)

    def agent_budget_tcu(self, tenant_id: int, agent_id: int) -> int | None:
        return caps.agent_budget_tcu(tenant_id, agent_id)

    def hard_cap_message(self, used: int, cap: int, resets_at: datetime) -> str:
        return caps.hard_cap_message(used, cap, resets_at)

    def platform_allowed(self, tenant: Tenant) -> bool:
        return plans.plan_allows_platform(tenant)

    def usage_page_context(self, tenant: Tenant) -> dict[str, object]:
        billing = summary.billing_summary(tenant=tenant, with_invoices=False)
        bar = {"used": billing["tcu_used"], "warn": billing["warn_tcu"], "hard": billing["hard_tcu"]}
        bar["pct"] = min(100, round(100 * bar["used"] / bar["hard"])) if bar["hard"] else 0
        bar["warn_pct"] = min(100, round(100 * bar["warn"] / bar["hard"])) if bar["hard"] else 0
        return {"caps": bar, "banner": billing["banner"]}


def on_usage_recorded(
    sender: object,
    *,
    tenant_id: int,
    tcu_before: int,
    tcu_after: int,
    tokens_before: int,
    tokens_after: int,
    **kwargs: object,
) -> None:
    """Cap and allowance alerts for the usage just stored (pure arithmetic; alerts go out as tasks)."""
    caps.after_usage(
        tenant_id=tenant_id,
        tcu_before=tcu_before,
        tcu_after=tcu_after,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
    )
