"""Billing's usage selectors: TCU used, platform tokens and the overage of a tenant's period."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Q, Sum

from billing.models import Plan
from billing.subscriptions import period_bounds, period_of
from llm.limits.budget import platform_used_tcu, used_tcu
from llm.models import UsageEvent
from llm.usage.selectors import platform_tokens_since

# The period helpers live in the `billing.subscriptions` leaf; they stay importable from here.
__all__ = [
    "Overage",
    "overage_of",
    "period_bounds",
    "period_of",
    "platform_tcu_used",
    "platform_tokens",
    "tcu_used",
]

log = logging.getLogger(__name__)
_MTOK = Decimal(1_000_000)
_CENT = Decimal("0.01")


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


@dataclass(frozen=True, slots=True)
class Overage:
    period: str
    used_tokens: int
    included_tokens: int
    overage_tokens: int
    usd_per_mtok: Decimal
    amount_usd: Decimal

    @property
    def amount_cents(self) -> int:
        return int((self.amount_usd * 100).to_integral_value(rounding=ROUND_HALF_UP))


def overage_of(*, tenant_id: int, plan: Plan, period: str, fast: bool = False) -> Overage:
    used = platform_tokens(tenant_id=tenant_id, period=period, fast=fast)
    over = max(0, used - plan.included_tokens) if plan.overage_usd_per_mtok > 0 else 0
    amount = (Decimal(over) * plan.overage_usd_per_mtok / _MTOK).quantize(_CENT, rounding=ROUND_HALF_UP)
    return Overage(
        period=period,
        used_tokens=used,
        included_tokens=plan.included_tokens,
        overage_tokens=over,
        usd_per_mtok=plan.overage_usd_per_mtok,
        amount_usd=amount,
    )
