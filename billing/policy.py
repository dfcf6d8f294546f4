"""Billing's implementation of the router's limits policy (`llm.policy.Policy`), registered at start-up."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from billing import caps, plans, summary
from llm.policy import ManagedAccess

if TYPE_CHECKING:
    from tenants.models import Tenant


class BillingPolicy:
    # Module attributes, looked up at call time: tests replace `billing.plans.plan_allows_platform`.
    def limits_for(self, tenant_id: int) -> caps.Limits:
        return caps.limits_for(tenant_id)

    def agent_budget_tcu(self, tenant_id: int, agent_id: int) -> int | None:
        return caps.agent_budget_tcu(tenant_id, agent_id)

    def hard_cap_message(self, used: int, cap: int, resets_at: datetime, *, scope: str = "tenant") -> str:
        return caps.hard_cap_message(used, cap, resets_at, scope=scope)

    def platform_allowed(self, tenant: Tenant) -> bool:
        return plans.plan_allows_platform(tenant)

    def managed_access(self, tenant_id: int, agent_id: int | None) -> ManagedAccess | None:
        return caps.managed_access(tenant_id, agent_id)

    def tiers_allowing(self, model_id: str) -> tuple[str, ...]:
        return caps.tiers_allowing(model_id)

    def usage_page_context(self, tenant: Tenant) -> dict[str, object]:
        """`caps`: one bar per cap that applies, each saying what it counts; `banner`: billing's banner;
        `managed_usage`: this period's managed agents (tokens used against their included tokens, overage so far:
        the summary's own figures, so the page and the invoice agree) and the agents on the workspace's own keys."""
        billing = summary.billing_summary(tenant=tenant, with_invoices=False)
        bars = []
        if billing["own_warn_tcu"] is not None or billing["own_hard_tcu"] is not None:
            bars.append(
                _bar(
                    "Your own caps",
                    "TCU of every call this month, every mode (Billing → Caps)",
                    billing["tcu_used"],
                    billing["own_warn_tcu"],
                    billing["own_hard_tcu"],
                )
            )
        if billing["platform_hard_tcu"]:
            bars.append(
                _bar(
                    "Platform guardrail",
                    "TCU of platform-managed calls this month; your own keys never count",
                    billing["platform_tcu_used"],
                    billing["platform_warn_tcu"],
                    billing["platform_hard_tcu"],
                )
            )
        return {
            "caps": bars,
            "banner": billing["banner"],
            "managed_usage": summary.managed_usage(tenant, billing),
        }


def _bar(label: str, note: str, used: int, warn: int | None, hard: int | None) -> dict[str, object]:
    return {
        "label": label,
        "note": note,
        "used": used,
        "warn": warn,
        "hard": hard,
        "pct": (min(100, round(100 * used / hard)) if hard else 100) if hard is not None else 0,
        "warn_pct": min(100, round(100 * warn / hard)) if hard and warn is not None else 0,
        "past_warn": warn is not None and used >= warn,
    }


def on_usage_recorded(
    sender: object,
    *,
    tenant_id: int,
    tcu_before: int,
    tcu_after: int,
    tokens_before: int,
    tokens_after: int,
    platform_tcu_before: int = 0,
    platform_tcu_after: int = 0,
    **kwargs: object,
) -> None:
    """Cap and allowance alerts for the usage just stored (pure arithmetic; alerts go out as tasks)."""
    caps.after_usage(
        tenant_id=tenant_id,
        tcu_before=tcu_before,
        tcu_after=tcu_after,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
        platform_tcu_before=platform_tcu_before,
        platform_tcu_after=platform_tcu_after,
    )
