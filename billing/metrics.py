"""Per-tenant TCU gauges for /metrics: `byok_tcu_used{tenant}` and `byok_tcu_cap_ratio{tenant,level}`."""

from __future__ import annotations

from billing.caps import limits_for
from billing.usage import period_of, tcu_used
from tenants.models import Tenant


def collect_tenant_gauges() -> list[tuple[str, int, int, int]]:
    """(tenant_slug, tcu_used, warn_tcu, hard_tcu) for every active tenant, this period (cheap: cached limits,
    Redis counters)."""
    period = period_of()
    out = []
    for tenant_id, slug in Tenant.objects.filter(is_active=True).order_by("slug").values_list("id", "slug"):
        limits = limits_for(tenant_id)
        out.append((slug, tcu_used(tenant_id=tenant_id, period=period), limits.warn_tcu, limits.hard_tcu))
    return out
