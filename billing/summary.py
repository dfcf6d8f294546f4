"""Billing selectors for the API and pages: the period's summary and the banner to show."""

from __future__ import annotations

import logging
from datetime import UTC
from decimal import Decimal
from typing import Any

from django.conf import settings

from billing import caps
from billing.managed import unmanaged_agents
from billing.models import Plan, Subscription
from billing.stripe.client import BillingError, stripe_configured
from billing.stripe.sync import list_invoices
from billing.subscriptions import billable_agents, free_plan, period_bounds, period_of
from billing.usage import AgentOverage, overage_of, platform_tcu_used, tcu_used
from tenants.models import Tenant

log = logging.getLogger(__name__)


def _usd(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def _plan_and_sub(tenant: Tenant) -> tuple[Plan | None, Subscription | None]:
    sub = Subscription.objects.for_tenant(tenant).select_related("plan").first()
    return (sub.plan if sub else free_plan()), sub


def base_price(plan: Plan | None, tenant: Tenant) -> Decimal:
    """The workspace plan's monthly price (managed tiers are priced per agent on top: `managed_json`)."""
    if plan is None:
        return Decimal(0)
    if plan.per_agent:
        return plan.price_per_agent_usd * billable_agents(tenant)
    return plan.price_flat_usd


def managed_json(agent: AgentOverage) -> dict[str, Any]:
    """One managed agent's line of the summary: what the usage page's per-agent bars read."""
    return {
        "agent": agent.agent_slug or None,  # None: the workspace's default agent (calls without an agent)
        "agent_name": agent.agent_name,
        "active": agent.active,  # False: managed earlier in the period, off now (its overage still counts)
        "tier": agent.tier,
        "tier_name": agent.tier_name,
        "price_usd": _usd(agent.price_usd),
        "included_tokens": agent.included_tokens,
        "used_tokens": agent.used_tokens,
        "overage_tokens": agent.overage_tokens,
        "overage_usd_per_mtok": _usd(agent.usd_per_mtok),
        "overage_amount_usd": _usd(agent.amount_usd),
    }


def billing_summary(
    *, tenant: Tenant, period: str | None = None, with_invoices: bool = True
) -> dict[str, Any]:
    """What `GET /api/billing/summary` returns (pages render the same dict)."""
    period = period or period_of()
    _, resets_at = period_bounds(period)  # validates the period
    plan, sub = _plan_and_sub(tenant)
    limits = caps.limits_for(tenant.id)
    used_tcu = tcu_used(tenant_id=tenant.id, period=period)
    used_platform_tcu = platform_tcu_used(tenant_id=tenant.id, period=period)
    ov = overage_of(tenant_id=tenant.id, period=period, fast=True)
    base = base_price(plan, tenant) + sum((a.price_usd for a in ov.agents if a.active), Decimal(0))
    invoices: list[dict[str, Any]] = []
    invoices_error = ""
    if with_invoices and sub is not None and sub.stripe_customer_id and stripe_configured():
        try:
            invoices = list_invoices(tenant)
        except BillingError as exc:
            invoices_error = exc.message
    body: dict[str, Any] = {
        "period": period,
        "plan": plan.slug if plan else "free",
        "plan_name": plan.name if plan else "Free",
        "tier": plan.tier if plan else "",
        "status": sub.status if sub else Subscription.Status.ACTIVE,
        "platform_allowed": limits.platform_allowed,
        "tcu_used": used_tcu,
        # The caps that apply: the tenant's own when set, else the platform's guardrail (None: neither).
        "warn_tcu": limits.warn_tcu,
        "hard_tcu": limits.hard_tcu,
        # Each source on its own: own caps count tcu_used (every mode), the guardrail platform_tcu_used.
        "own_warn_tcu": limits.own_warn_tcu,
        "own_hard_tcu": limits.own_hard_tcu,
        "platform_tcu_used": used_platform_tcu,
        "platform_warn_tcu": limits.platform_warn_tcu,
        "platform_hard_tcu": limits.platform_hard_tcu,
        "resets_at": resets_at.isoformat(),
        "included_tokens": ov.included_tokens,  # the managed agents' allowances together
        "used_tokens": ov.used_tokens,
        "overage_tokens": ov.overage_tokens,
        "overage_amount_usd": _usd(ov.amount_usd),
        "base_amount_usd": _usd(base),  # the workspace plan + each managed agent's tier
        "amount_due_usd": _usd(base + ov.amount_usd),
        "managed": [managed_json(a) for a in ov.agents],
        "invoices": invoices,
        "banner": billing_banner(
            tenant,
            used_tcu=used_tcu if period == period_of() else None,
            platform_tcu=used_platform_tcu if period == period_of() else None,
        ),
    }
    if invoices_error:
        body["invoices_error"] = invoices_error
    return body


def managed_usage(tenant: Tenant, summary: dict[str, Any]) -> dict[str, Any]:
    """What the usage and billing pages show per agent (templates/billing/_managed_usage.html): the managed agents
    of `summary` (a `billing_summary`: the invoice's own figures) and the agents on the workspace's own keys."""
    return {
        "period": summary["period"],
        "rows": summary["managed"],
        "unmanaged": unmanaged_agents(tenant),
        "overage_amount_usd": summary["overage_amount_usd"],
        "plan_covers_platform": summary["platform_allowed"],
    }


def billing_banner(
    tenant: Tenant, *, used_tcu: int | None = None, platform_tcu: int | None = None
) -> dict[str, Any] | None:
    """The most important billing banner for the tenant's pages, or None: past due first, then caps (a hard cap
    reached before a warn level passed; the tenant's own caps before the platform's guardrail).

    `used_tcu` (every call) and `platform_tcu` (platform-managed calls) are this period's when the caller has
    them; else they are read."""
    sub = Subscription.objects.for_tenant(tenant).first()
    limits = caps.limits_for(tenant.id)
    if sub is not None and sub.status == Subscription.Status.PAST_DUE:
        grace_end = sub.grace_ends_at(settings.BILLING_GRACE_DAYS)
        if not limits.platform_allowed:
            return {
                "level": "error",
                "code": "past_due_blocked",
                "message": limits.platform_block_reason,
                "action": "portal",
            }
        when = f"{grace_end:%Y-%m-%d}" if grace_end else "soon"
        return {
            "level": "warning",
            "code": "past_due",
            "action": "portal",
            "message": f"Your last payment failed. Update your payment method by {when}; after that, "
            "platform-managed models pause (your own keys and custom endpoints keep working).",
        }
    guarded = bool(limits.platform_warn_tcu or limits.platform_hard_tcu)
    if limits.own_warn_tcu is None and limits.own_hard_tcu is None and not guarded:
        return None  # no cap of its own and no platform spend: nothing can stop this tenant
    all_tcu = tcu_used(tenant_id=tenant.id) if used_tcu is None else used_tcu
    if platform_tcu is None:
        platform_tcu = platform_tcu_used(tenant_id=tenant.id) if guarded else 0
    _, resets_at = period_bounds(period_of())
    until = f"{resets_at.astimezone(UTC):%Y-%m-%d}"
    own_warn, own_hard = limits.own_warn_tcu, limits.own_hard_tcu
    guard_warn, guard_hard = limits.platform_warn_tcu, limits.platform_hard_tcu
    if own_hard is not None and all_tcu >= own_hard:
        return {
            "level": "error",
            "code": "hard_cap",
            "action": "caps",
            "message": caps.hard_cap_message(all_tcu, own_hard, resets_at),
        }
    if guard_hard and platform_tcu >= guard_hard:
        return {
            "level": "error",
            "code": "guardrail",
            "action": "caps",
            "message": caps.hard_cap_message(platform_tcu, guard_hard, resets_at, scope="platform"),
        }
    if own_warn is not None and all_tcu >= own_warn:
        stop = (
            f"calls stop at your hard cap of {own_hard:,} TCU until {until} or the cap is raised."
            if own_hard is not None
            else "you set no hard cap of your own."
        )
        return {
            "level": "warning",
            "code": "near_cap",
            "action": "caps",
            "message": f"{all_tcu:,} TCU used this month: past your warn level of {own_warn:,}; {stop}",
        }
    if guard_warn and platform_tcu >= guard_warn:
        return {
            "level": "warning",
            "code": "near_guardrail",
            "action": "caps",
            "message": f"{platform_tcu:,} TCU of platform-managed calls this month: past the guardrail's warn "
            f"level of {guard_warn:,}; platform-managed calls stop at {guard_hard:,} TCU until {until} (your "
            "own keys and custom endpoints keep working).",
        }
    return None
