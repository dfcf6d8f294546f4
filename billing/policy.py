"""Billing's implementation of the router's limits policy (`llm.policy.Policy`), registered at start-up."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class BillingPolicy:
    def limits_for(self, tenant_id: int) -> Any:
        from billing.caps import limits_for

        return limits_for(tenant_id)

    def agent_budget_tcu(self, tenant_id: int, agent_id: int) -> int | None:
        from billing.caps import agent_budget_tcu

        return agent_budget_tcu(tenant_id, agent_id)

    def hard_cap_message(self, used: int, cap: int, resets_at: datetime) -> str:
        from billing.caps import hard_cap_message

        return hard_cap_message(used, cap, resets_at)

    def platform_allowed(self, tenant: Any) -> bool:
        from billing.plans import plan_allows_platform

        return plan_allows_platform(tenant)

    def usage_page_context(self, tenant: Any) -> dict[str, Any]:
        from billing.summary import billing_summary

        billing = billing_summary(tenant=tenant, with_invoices=False)
        caps = {"used": billing["tcu_used"], "warn": billing["warn_tcu"], "hard": billing["hard_tcu"]}
        caps["pct"] = min(100, round(100 * caps["used"] / caps["hard"])) if caps["hard"] else 0
        caps["warn_pct"] = min(100, round(100 * caps["warn"] / caps["hard"])) if caps["hard"] else 0
        return {"caps": caps, "banner": billing["banner"]}


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
    from billing.caps import after_usage

    after_usage(
        tenant_id=tenant_id,
        tcu_before=tcu_before,
        tcu_after=tcu_after,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
    )
