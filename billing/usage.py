"""Billing's usage selectors: TCU used, platform tokens and the overage of a tenant's period, per managed agent."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Q, Sum

from billing.models import ManagedAgent
from billing.subscriptions import managed_rows_of_period, period_bounds, period_of
from llm.limits.budget import platform_used_tcu, used_tcu
from llm.models import UsageEvent
from llm.usage.selectors import platform_tokens_by_agent_since, platform_tokens_since

# The period helpers live in the `billing.subscriptions` leaf; they stay importable from here.
__all__ = [
    "AgentOverage",
    "Overage",
    "overage_of",
    "period_bounds",
    "period_of",
    "platform_tcu_used",
    "platform_tokens",
    "platform_tokens_by_agent",
    "tcu_used",
]

log = logging.getLogger(__name__)
_MTOK = Decimal(1_000_000)
_CENT = Decimal("0.01")
DEFAULT_AGENT_LABEL = "workspace default"


def _events(tenant_id: int, period: str):
    start, end = period_bounds(period)
    return UsageEvent.objects.for_tenant(tenant_id).filter(created_at__gte=start, created_at__lt=end)


def tcu_used(*, tenant_id: int, period: str | None = None) -> int:
    """TCU of the period: the gateway's live counter when available, else the PostgreSQL sums."""
    period = period or period_of()
    if period == period_of():
        try:
            return int(used_tcu(tenant_id=tenant_id, period=period))
        except Exception:  # Redis down: the database still knows
            log.warning("TCU counter unavailable for tenant %s; summing events", tenant_id, exc_info=True)
    return int(_events(tenant_id, period).aggregate(t=Sum("tcu"))["t"] or 0)


def platform_tcu_used(*, tenant_id: int, period: str | None = None) -> int:
    """Platform-mode TCU of the period (what the platform's guardrail counts): the live counter when available,
    else the PostgreSQL sums."""
    period = period or period_of()
    if period == period_of():
        try:
            return int(platform_used_tcu(tenant_id=tenant_id, period=period))
        except Exception:  # Redis down: the database still knows
            log.warning(
                "platform TCU counter unavailable for tenant %s; summing events", tenant_id, exc_info=True
            )
    return int(_events(tenant_id, period).filter(mode="platform").aggregate(t=Sum("tcu"))["t"] or 0)


def platform_tokens(*, tenant_id: int, period: str, fast: bool = False) -> int:
    """Input + output tokens of platform-mode calls in the period: what included tokens and overage count.

    `fast` (pages) reads the current period from the usage rollups plus the live hour; pushes to Stripe and
    reconciliation sum the events themselves."""
    if fast and period == period_of():
        return platform_tokens_since(tenant_id=tenant_id, since=period_bounds(period)[0])
    agg = _events(tenant_id, period).aggregate(
        i=Sum("input_tokens", filter=Q(mode="platform")), o=Sum("output_tokens", filter=Q(mode="platform"))
    )
    return int(agg["i"] or 0) + int(agg["o"] or 0)


def platform_tokens_by_agent(*, tenant_id: int, period: str, fast: bool = False) -> dict[int | None, int]:
    """Platform-mode input + output tokens of the period per agent id (None: calls without an agent, i.e. the
    workspace's default agent); `fast` as in `platform_tokens`."""
    if fast and period == period_of():
        return platform_tokens_by_agent_since(tenant_id=tenant_id, since=period_bounds(period)[0])
    rows = (
        _events(tenant_id, period)
        .filter(mode="platform")
        .order_by()
        .values("agent_id")
        .annotate(i=Sum("input_tokens"), o=Sum("output_tokens"))
    )
    return {r["agent_id"]: int(r["i"] or 0) + int(r["o"] or 0) for r in rows if (r["i"] or 0) + (r["o"] or 0)}


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class AgentOverage:
    """One managed agent's period: its tier's allowance, the platform tokens it used and what lies beyond."""

    agent_id: int | None  # None: the workspace's default agent
    active: bool  # still managed (False: its tier ended during the period)
    agent_slug: str  # "" for the default agent
    agent_name: str
    tier: str
    tier_name: str
    price_usd: Decimal
    included_tokens: int
    used_tokens: int
    overage_tokens: int
    usd_per_mtok: Decimal
    amount_usd: Decimal

    @property
    def label(self) -> str:
        return self.agent_slug or DEFAULT_AGENT_LABEL


@dataclass(frozen=True, slots=True)
class Overage:
    """A tenant's period: platform tokens, the managed agents' allowances and overage (the sum of the agents')."""

    period: str
    used_tokens: int  # every platform-mode token of the period, managed agents or not
    included_tokens: int
    overage_tokens: int
    amount_usd: Decimal
    agents: tuple[AgentOverage, ...] = ()

    @property
    def amount_cents(self) -> int:
        return int((self.amount_usd * 100).to_integral_value(rounding=ROUND_HALF_UP))


def agent_overage(row: ManagedAgent, used: int) -> AgentOverage:
    tier = row.tier
    over = max(0, used - tier.included_tokens) if tier.overage_usd_per_mtok > 0 else 0
    return AgentOverage(
        agent_id=row.agent_id,
        active=row.ended_at is None,
        agent_slug=row.agent.slug if row.agent else "",
        agent_name=row.agent.name if row.agent else "Workspace default",
        tier=tier.slug,
        tier_name=tier.name,
        price_usd=tier.price_usd,
        included_tokens=tier.included_tokens,
        used_tokens=used,
        overage_tokens=over,
        usd_per_mtok=tier.overage_usd_per_mtok,
        amount_usd=_money(Decimal(over) * tier.overage_usd_per_mtok / _MTOK),
    )


def overage_of(*, tenant_id: int, period: str, fast: bool = False) -> Overage:
    """The period's overage: for each managed agent, max(0, its platform tokens − its tier's included tokens) ×
    the tier's price per 1M, rounded to the cent; the tenant's amount is the sum. Every agent managed during the
    period counts, at its current (else last) tier; the tokens of a deleted agent lose their agent."""
    by_agent = platform_tokens_by_agent(tenant_id=tenant_id, period=period, fast=fast)
    rows = managed_rows_of_period(tenant_id, period)
    agents = tuple(agent_overage(row, by_agent.get(row.agent_id, 0)) for row in rows)
    return Overage(
        period=period,
        used_tokens=sum(by_agent.values()),
        included_tokens=sum(a.included_tokens for a in agents),
        overage_tokens=sum(a.overage_tokens for a in agents),
        amount_usd=sum((a.amount_usd for a in agents), Decimal(0)),
        agents=agents,
    )
