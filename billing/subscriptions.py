"""The leaf of billing: a tenant's Subscription and plan, billing periods, and the plan lookups every layer uses."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.db.models import Q

from billing.models import ManagedAgent, ManagedTier, Plan, Subscription
from tenants.models import Agent, Tenant
from tenants.scoping import TenantScopedQuerySet

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


# --- managed tiers ------------------------------------------------------------------------------------


def get_tier(slug: str | None) -> ManagedTier | None:
    """An active managed tier by slug, or None."""
    if not slug or not isinstance(slug, str):
        return None
    return ManagedTier.objects.filter(slug=slug.strip().lower(), is_active=True).first()


def tier_choices() -> list[str]:
    return list(ManagedTier.objects.filter(is_active=True).values_list("slug", flat=True))


def _by_agent(rows: list[ManagedAgent]) -> list[ManagedAgent]:
    rows.sort(key=lambda r: (r.agent_id is not None, r.agent.slug if r.agent else ""))
    return rows


def live_managed(tenant: Tenant | int) -> TenantScopedQuerySet[ManagedAgent]:
    """The tenant's live ManagedAgent rows (not ended), as a queryset."""
    return ManagedAgent.objects.for_tenant(tenant).filter(ended_at__isnull=True)


def managed_rows(tenant: Tenant | int) -> list[ManagedAgent]:
    """The tenant's managed agents with their tier and agent: the default agent (agent NULL) first, then by slug."""
    return _by_agent(list(live_managed(tenant).select_related("tier", "agent")))


def managed_rows_of_period(tenant: Tenant | int, period: str) -> list[ManagedAgent]:
    """Every agent managed at some time during the period, once: its live row, else the one that ended last."""
    start, end = period_bounds(period)
    rows = (
        ManagedAgent.objects.for_tenant(tenant)
        .filter(enabled_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start))
        .select_related("tier", "agent")
    )
    chosen: dict[int | None, ManagedAgent] = {}
    for row in rows:
        kept = chosen.get(row.agent_id)
        if kept is None or (
            kept.ended_at is not None and (row.ended_at is None or row.ended_at > kept.ended_at)
        ):
            chosen[row.agent_id] = row
    return _by_agent(list(chosen.values()))


def managed_tier_counts(tenant: Tenant | int) -> dict[str, int]:
    """Managed agents per tier slug (only tiers with at least one)."""
    counts: dict[str, int] = {}
    for slug in live_managed(tenant).values_list("tier__slug", flat=True):
        counts[slug] = counts.get(slug, 0) + 1
    return counts


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
