"""Per-tenant TCU gauges for /metrics: `byok_tcu_used{tenant}`, `byok_platform_tcu_used{tenant}` and
`byok_tcu_cap_ratio{tenant,level}`."""

from __future__ import annotations

from dataclasses import dataclass, field

from billing.caps import limits_for
from billing.usage import period_of, platform_tcu_used, tcu_used
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
