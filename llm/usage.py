"""Usage reads and rollups: complete days come from UsageDaily, the rest live from UsageEvent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from tenants.models import Agent, Tenant

from .models import UsageDaily, UsageEvent

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
          "90d": timedelta(days=90), "all": None}
# Upper bounds (ms) of the latency histogram kept in rollups; p95 is read from it.
LATENCY_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 10**9)
_ZERO = Decimal(0)


def _bucket_aggregates(prefix: str = "b") -> dict[str, Any]:
    return {f"{prefix}{i}": Count("id", filter=Q(latency_ms__lte=bound)) for i, bound in enumerate(LATENCY_BUCKETS_MS)}


def _event_aggregates() -> dict[str, Any]:
    return {
        "requests": Count("id"),
        "errors": Count("id", filter=~Q(status="ok")),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cost_usd": Sum("cost_usd"),
        "billed_usd": Sum("billed_usd"),
        "tcu": Sum("tcu"),
        "latency_ms_sum": Sum("latency_ms"),
    }


def _histogram(row: dict[str, Any]) -> list[int]:
    """Per-bucket (not cumulative) counts from the cumulative filtered counts of one aggregate row."""
    cumulative = [int(row.get(f"b{i}") or 0) for i in range(len(LATENCY_BUCKETS_MS))]
    return [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]


def p95_from(hist: list[int]) -> int:
    total = sum(hist)
    if not total:
        return 0
    target = 0.95 * total
    running = 0
    for count, bound in zip(hist, LATENCY_BUCKETS_MS, strict=False):
        running += count
        if running >= target:
            return bound if bound < 10**9 else LATENCY_BUCKETS_MS[-2]
    return LATENCY_BUCKETS_MS[-2]


# --- rollups -------------------------------------------------------------------------------------

def rollup_day(*, tenant_id: int, day: date) -> int:
    """Recompute one tenant-day of UsageDaily from its events (idempotent: replaces the day's rows)."""
    start = _day_start(day)
    end = start + timedelta(days=1)
    rows = (
        UsageEvent.objects.unscoped()
        .filter(tenant_id=tenant_id, created_at__gte=start, created_at__lt=end)
        .values("agent_id", "model", "provider", "mode")
        .annotate(**_event_aggregates(), **_bucket_aggregates())
    )
    objs = [
        UsageDaily(
            tenant_id=tenant_id, day=day, agent_id=r["agent_id"], model=r["model"], provider=r["provider"],
            mode=r["mode"], requests=r["requests"], errors=r["errors"], input_tokens=r["input_tokens"] or 0,
            output_tokens=r["output_tokens"] or 0, cost_usd=r["cost_usd"] or _ZERO, billed_usd=r["billed_usd"] or _ZERO,
            tcu=r["tcu"] or 0, latency_ms_sum=r["latency_ms_sum"] or 0, latency_hist=_histogram(r),
        )
        for r in rows
    ]
    with transaction.atomic():
        UsageDaily.objects.unscoped().filter(tenant_id=tenant_id, day=day).delete()
        UsageDaily.objects.unscoped().bulk_create(objs)
    return len(objs)


def rollup_pending(*, now: datetime | None = None, redo_days: int = 2) -> int:
    """Roll up every complete day not yet rolled up, and redo the last `redo_days` (late events)."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    written = 0
    first_days = (
        UsageEvent.objects.unscoped().filter(created_at__lt=_day_start(today))
        .values("tenant_id").annotate(first=Min(TruncDate("created_at", tzinfo=UTC)))
    )
    for row in first_days:
        tenant_id = row["tenant_id"]
        last = UsageDaily.objects.unscoped().filter(tenant_id=tenant_id).aggregate(m=Max("day"))["m"]
        start_day = row["first"] if last is None else max(row["first"], last - timedelta(days=redo_days - 1))
        day = start_day
        while day < today:
            written += rollup_day(tenant_id=tenant_id, day=day)
            day += timedelta(days=1)
    return written


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


# --- the usage selector ----------------------------------------------------------------------------

def usage_summary(*, tenant: Tenant, range_name: str = "30d", agent: Agent | None = None,
                  now: datetime | None = None) -> dict[str, Any]:
    """The `/api/llm/usage` body: totals, by model, by day and by agent for the range."""
    if range_name not in RANGES:
        raise ValueError(range_name)
    now = now or timezone.now()
    span = RANGES[range_name]
    since = now - span if span else None
    rolled_through = UsageDaily.objects.unscoped().filter(tenant=tenant).aggregate(m=Max("day"))["m"]
    live_from = _day_start(rolled_through + timedelta(days=1)) if rolled_through else None

    # Rolled-up part: whole days inside the range, up to the last rolled day. A 24h range reads events only.
    daily = UsageDaily.objects.unscoped().filter(tenant=tenant)
    events = UsageEvent.objects.unscoped().filter(tenant=tenant)
    if agent is not None:
        daily = daily.filter(agent=agent)
        events = events.filter(agent=agent)
    if range_name == "24h" or rolled_through is None:
        daily = daily.none()
        events = events.filter(created_at__gte=since) if since else events
    else:
        if since is not None:
            since_utc = since.astimezone(UTC)
            first_full_day = since_utc.date() if since_utc.time() == datetime.min.time() \
                else since_utc.date() + timedelta(days=1)
            daily = daily.filter(day__gte=first_full_day)
            # The partial first day of the range and everything after the last rolled day come from events.
            events = events.filter(created_at__gte=since).filter(
                Q(created_at__gte=live_from) | Q(created_at__lt=_day_start(first_full_day)))
        else:
            events = events.filter(created_at__gte=live_from)

    groups: dict[str, dict[tuple, dict[str, Any]]] = {"model": {}, "day": {}, "agent": {}}
    totals = _empty()

    def add(bucket: dict[str, Any], r: dict[str, Any], hist: list[int]) -> None:
        for name in ("requests", "errors", "input_tokens", "output_tokens", "tcu", "latency_ms_sum"):
            bucket[name] += int(r.get(name) or 0)
        bucket["cost_usd"] += r.get("cost_usd") or _ZERO
        bucket["billed_usd"] += r.get("billed_usd") or _ZERO
        bucket["hist"] = [a + b for a, b in zip(bucket["hist"], hist, strict=False)]

    for r in daily.values("day", "model", "provider", "agent_id", "requests", "errors", "input_tokens",
                          "output_tokens", "cost_usd", "billed_usd", "tcu", "latency_ms_sum", "latency_hist"):
        hist = list(r["latency_hist"]) or [0] * len(LATENCY_BUCKETS_MS)
        _fold(groups, totals, add, r, hist, r["day"])
    live = (events.annotate(day=TruncDate("created_at", tzinfo=UTC))
            .values("day", "model", "provider", "agent_id")
            .annotate(**_event_aggregates(), **_bucket_aggregates()))
    for r in live:
        _fold(groups, totals, add, r, _histogram(r), r["day"])

    agent_slugs = dict(Agent.objects.unscoped().filter(tenant=tenant).values_list("id", "slug"))
    return {
        "range": range_name,
        "totals": _render(totals),
        "by_model": sorted(
            ({"model": k[0], "provider": k[1], **_render(v)} for k, v in groups["model"].items()),
            key=lambda x: (-x["requests"], x["model"])),
        "by_day": [{"day": k[0].isoformat(), **_render(v)} for k, v in sorted(groups["day"].items())],
        "by_agent": sorted(
            ({"agent": agent_slugs.get(k[0]) if k[0] else None, **_render(v)} for k, v in groups["agent"].items()),
            key=lambda x: (-x["requests"], x["agent"] or "")),
    }


def _empty() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "tcu": 0, "latency_ms_sum": 0,
            "cost_usd": _ZERO, "billed_usd": _ZERO, "hist": [0] * len(LATENCY_BUCKETS_MS)}


def _fold(groups, totals, add, r, hist, day) -> None:
    add(totals, r, hist)
    for name, key in (("model", (r["model"], r["provider"])), ("day", (day,)), ("agent", (r["agent_id"],))):
        bucket = groups[name].setdefault(key, _empty())
        add(bucket, r, hist)


def _render(b: dict[str, Any]) -> dict[str, Any]:
    requests = b["requests"]
    return {
        "requests": requests,
        "errors": b["errors"],
        "error_rate": round(b["errors"] / requests, 4) if requests else 0.0,
        "input_tokens": b["input_tokens"],
        "output_tokens": b["output_tokens"],
        "cost_usd": float(round(b["cost_usd"], 6)),
        "billed_usd": float(round(b["billed_usd"], 6)),
        "tcu": b["tcu"],
        "avg_latency_ms": round(b["latency_ms_sum"] / requests, 1) if requests else 0.0,
        "p95_latency_ms": p95_from(b["hist"]),
    }


def vacuum_analyze() -> None:
    """Fresh planner statistics after a bulk load (the data generator calls it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE llm_usageevent; ANALYZE llm_usagedaily;")


__all__ = ["LATENCY_BUCKETS_MS", "RANGES", "p95_from", "rollup_day", "rollup_pending", "usage_summary"]
