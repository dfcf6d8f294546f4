"""Billing's figures for /metrics: per-tenant TCU and cap ratios, and the platform's revenue against its list
cost per tenant (the margin the alert rules watch)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.core.cache import cache
from django.db.models import Exists, F, Min, OuterRef, Q, Sum

from billing.caps import limits_for
from billing.models import ManagedAgent, Subscription
from billing.usage import agent_overage, period_bounds, period_of, platform_tcu_used, tcu_used
from llm.models import UsageEvent, UsageHourly, UsageWatermark
from tenants.models import Tenant


@dataclass(frozen=True, slots=True)
class TenantGauges:
    slug: str
    tcu_used: int  # every call, every mode
    platform_tcu_used: int  # platform-managed calls: what the guardrail counts
    # "warn" / "hard" → used / level for the caps that apply, each with what it counts: the tenant's own caps
    # (every call) when set, else the platform's guardrail (platform-managed calls). None applying: no ratio.
    ratios: dict[str, float] = field(default_factory=dict)


def collect_tenant_gauges() -> list[TenantGauges]:
    """The gauges of every active tenant, this period (cheap: cached limits, Redis counters)."""
    period = period_of()
    out = []
    for tenant_id, slug in Tenant.objects.filter(is_active=True).order_by("slug").values_list("id", "slug"):
        limits = limits_for(tenant_id)
        used = tcu_used(tenant_id=tenant_id, period=period)
        platform_used = platform_tcu_used(tenant_id=tenant_id, period=period)
        ratios = {}
        for level, own, guard in (
            ("warn", limits.own_warn_tcu, limits.platform_warn_tcu),
            ("hard", limits.own_hard_tcu, limits.platform_hard_tcu),
        ):
            if own:
                ratios[level] = used / own
            elif own is None and guard:
                ratios[level] = platform_used / guard
        out.append(TenantGauges(slug, used, platform_used, ratios))
    return out


# --- the platform's margin ---------------------------------------------------------------------------------

MARGIN_CACHE_SECONDS = 60  # a scrape every 15-60 s reads the figures once a minute, not on every scrape
_CACHE_KEY = "billing:metrics:margin:v1:{period}"
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TenantMargin:
    """One tenant's platform money this period (USD): what it pays for platform-managed LLM against what those
    calls cost the platform at list price. BYOK and custom calls are neither."""

    slug: str
    managed_usd: Decimal = _ZERO  # managed-tier subscriptions: each agent × its tier's price, prorated
    overage_usd: Decimal = _ZERO  # per managed agent, tokens beyond its tier's included tokens
    plan_usd: Decimal = _ZERO  # the price of a paid workspace plan that allows platform keys
    markup_usd: Decimal = _ZERO  # billed above list cost on platform calls (a plan's markup)
    cost_usd: Decimal = _ZERO  # list cost of the platform calls

    @property
    def revenue_usd(self) -> Decimal:
        return self.managed_usd + self.overage_usd + self.plan_usd + self.markup_usd


@dataclass(slots=True)
class _Sums:
    cost: Decimal = _ZERO
    markup: Decimal = _ZERO
    tokens: int = 0


def _platform_sums(start: datetime, end: datetime) -> dict[tuple[int, int | None], _Sums]:
    """(tenant id, agent id) → platform-mode list cost, markup and tokens of [start, end) (whole hours), every
    tenant at once and exact whatever the rollups' lag, as a tenant's usage page reads it: the hourly rows below
    its watermark and its events past it (created at or after its `through`, or above its `event_id`; every
    event of a tenant without one). At most three queries: the watermarks' lowest bounds, the tenants without
    one that have events in the period (few: new since the last rollup run, or one that stopped partway), then
    the rows and the events in one statement, so a rollup committing meanwhile cannot count an event twice or
    not at all. The events are found through the lowest bounds (index ranges: only the current hour's when the
    rollups are caught up), then kept when past their own tenant's watermark."""
    marks = UsageWatermark.objects.unscoped()
    low = marks.aggregate(through=Min("through"), upto=Min("event_id"))
    events = UsageEvent.objects.unscoped().filter(mode="platform", created_at__gte=start, created_at__lt=end)
    if low["through"] is not None:
        unmarked = Tenant.objects.order_by().filter(
            ~Exists(marks.filter(tenant=OuterRef("pk"))),
            Exists(
                UsageEvent.objects.unscoped().filter(
                    tenant=OuterRef("pk"), created_at__gte=start, created_at__lt=end
                )
            ),  # any mode: one index probe per tenant
        )
        past_lowest = Q(created_at__gte=low["through"]) | Q(id__gt=low["upto"])
        events = events.filter(past_lowest | Q(tenant_id__in=list(unmarked.values_list("id", flat=True))))
    events = events.filter(
        ~Exists(
            marks.filter(
                tenant=OuterRef("tenant_id"), through__gt=OuterRef("created_at"), event_id__gte=OuterRef("id")
            )
        )
    )
    hourly = UsageHourly.objects.unscoped().filter(
        Exists(marks.filter(tenant=OuterRef("tenant_id"), through__gt=OuterRef("hour"))),
        mode="platform",
        hour__gte=start,
        hour__lt=end,
    )
    sums: dict[tuple[int, int | None], _Sums] = defaultdict(_Sums)
    hourly_sums, event_sums = (
        rows.order_by()
        .values("tenant_id", "agent_id")
        .annotate(
            cost=Sum("cost_usd"),
            markup=Sum(F("billed_usd") - F("cost_usd"), filter=Q(billed_usd__gt=F("cost_usd"))),
            tokens=Sum("input_tokens") + Sum("output_tokens"),
        )
        for rows in (hourly, events)
    )
    for r in hourly_sums.union(event_sums, all=True):
        acc = sums[(r["tenant_id"], r["agent_id"])]
        acc.cost += r["cost"] or _ZERO
        acc.markup += r["markup"] or _ZERO
        acc.tokens += int(r["tokens"] or 0)
    return sums


def _active_share(row: ManagedAgent, start: datetime, end: datetime) -> Decimal:
    """The part of the period the row was managed: Stripe bills a tier ahead for the period and prorates an agent
    that joins or leaves, so a live row counts up to the period's end."""
    since = max(row.enabled_at, start)
    until = min(row.ended_at or end, end)
    if until <= since:
        return _ZERO
    return Decimal((until - since).total_seconds()) / Decimal((end - start).total_seconds())


def _overage_rows(rows: list[ManagedAgent]) -> list[ManagedAgent]:
    """Each agent once, as `billing.subscriptions.managed_rows_of_period` picks it: its live row, else the one
    that ended last (the row the period's overage is billed at)."""
    chosen: dict[int | None, ManagedAgent] = {}
    for row in rows:
        kept = chosen.get(row.agent_id)
        if kept is None or (
            kept.ended_at is not None and (row.ended_at is None or row.ended_at > kept.ended_at)
        ):
            chosen[row.agent_id] = row
    return list(chosen.values())


def platform_margin(period: str | None = None) -> list[TenantMargin]:
    """Every tenant's platform revenue and list cost for the period (default: this one), in a handful of queries
    whatever the number of tenants: active tenants always, others when they have figures; by slug."""
    period = period or period_of()
    start, end = period_bounds(period)
    usage = _platform_sums(start, end)
    money: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: _ZERO))
    tokens: dict[int, dict[int | None, int]] = defaultdict(dict)
    for (tenant_id, agent_id), sums in usage.items():
        money[tenant_id]["cost_usd"] += sums.cost
        money[tenant_id]["markup_usd"] += sums.markup
        tokens[tenant_id][agent_id] = sums.tokens

    managed = (
        ManagedAgent.objects.unscoped()
        .filter(enabled_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start))
        .select_related("tier", "agent")
        .order_by("tenant_id", "enabled_at")
    )
    by_tenant: dict[int, list[ManagedAgent]] = defaultdict(list)
    for row in managed:
        by_tenant[row.tenant_id].append(row)
        # every row its own span: an agent moved from Starter to Pro mid-period paid a part of each
        money[row.tenant_id]["managed_usd"] += row.tier.price_usd * _active_share(row, start, end)
    for tenant_id, rows in by_tenant.items():
        for row in _overage_rows(rows):
            used = tokens[tenant_id].get(row.agent_id, 0)
            money[tenant_id]["overage_usd"] += agent_overage(row, used).amount_usd

    paid_platform_plans = (
        Subscription.objects.unscoped()
        .filter(plan__platform_allowed=True)
        .filter(Q(plan__price_flat_usd__gt=0) | Q(plan__price_per_agent_usd__gt=0))
        .exclude(status=Subscription.Status.CANCELED)
        .select_related("plan")
    )
    for sub in paid_platform_plans:
        money[sub.tenant_id]["plan_usd"] += (
            sub.plan.price_flat_usd + sub.plan.price_per_agent_usd * sub.quantity
        )

    tenants = Tenant.objects.filter(Q(is_active=True) | Q(id__in=list(money))).values_list("id", "slug")
    out = [
        TenantMargin(slug, **{k: _cents(v) for k, v in money.get(tenant_id, {}).items()})
        for tenant_id, slug in tenants
    ]
    return sorted(out, key=lambda m: m.slug)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def collect_platform_margin() -> list[TenantMargin]:
    """`platform_margin` of this period for /metrics, computed at most once a minute (shared cache)."""
    key = _CACHE_KEY.format(period=period_of())
    cached = cache.get(key)
    if cached is None:
        cached = platform_margin()
        cache.set(key, cached, MARGIN_CACHE_SECONDS)
    return cached
