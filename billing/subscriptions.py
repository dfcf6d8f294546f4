"""The leaf of billing: a tenant's Subscription and plan, billing periods, and the plan lookups every layer uses."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import ValidationError

from billing.models import Plan, Subscription
from tenants.models import Agent, Tenant

FREE = "free"


class UnknownPlanError(ValidationError, ValueError):
    """An unknown plan slug: a field error for forms/commands, a ValueError for everything else."""


# --- periods ----------------------------------------------------------------------------------------


def period_of(dt: datetime | None = None) -> str:
    dt = dt or datetime.now(UTC)
    dt = dt.astimezone(UTC) if dt.tzinfo else dt
    return f"{dt.year:04d}-{dt.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    try:
        year, month = (int(p) for p in period.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except (ValueError, TypeError):
        raise ValueError(f"“{period}” is not a period; use YYYY-MM, e.g. 2026-05.") from None
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


# --- plans --------------------------------------------------------------------------------------------


def free_plan() -> Plan | None:
    return Plan.objects.filter(slug="free").first()


def plan_choices(*, public_only: bool = False) -> list[str]:
    plans = Plan.objects.filter(is_active=True)
    if public_only:
        plans = plans.filter(is_public=True)
    return list(plans.values_list("slug", flat=True))


def get_plan(slug: str | None, *, public_only: bool = False) -> Plan:
    """An active plan by slug. `public_only` (what tenants may choose): a private plan is answered exactly like an
    unknown one, so its existence does not leak; private plans are assigned by platform admins only."""
    slug = (slug or FREE).strip().lower()
    plans = Plan.objects.filter(slug=slug, is_active=True)
    if public_only:
        plans = plans.filter(is_public=True)
    plan = plans.first()
    if plan is None:
        choices = ", ".join(plan_choices(public_only=public_only))
        raise UnknownPlanError({"plan": [f"Unknown plan “{slug[:40]}”. Choose one of: {choices}."]})
    return plan


# --- the tenant's subscription ------------------------------------------------------------------------


def billable_agents(tenant: Tenant) -> int:
    """Agents billed on per-agent plans: the active ones, at least one."""
    return max(1, Agent.objects.for_tenant(tenant).filter(is_active=True).count())


def ensure_subscription(tenant: Tenant, *, lock: bool = False) -> Subscription:
    """The tenant's Subscription row, created on the free plan when missing."""
    qs = Subscription.objects.for_tenant(tenant).select_related("plan")
    if lock:
        qs = qs.select_for_update(of=("self",))
    sub = qs.first()
    if sub is not None:
        return sub
    Subscription.objects.for_tenant(tenant).get_or_create(defaults={"plan": get_plan(FREE)})
    return qs.get()


def local_status(stripe_status: str) -> str:
    """A Stripe subscription status as the local Subscription status."""
    if stripe_status in {"past_due", "unpaid"}:
        return Subscription.Status.PAST_DUE
    if stripe_status in {"canceled", "incomplete_expired"}:
        return Subscription.Status.CANCELED
    if stripe_status in Subscription.Status.values:
        return stripe_status
    return Subscription.Status.ACTIVE
