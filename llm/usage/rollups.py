"""Usage rollups: events summed per hour (UsageHourly) and day (UsageDaily) by the schedule, idempotently, with
a latency histogram so p95 works from rollups."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from llm.models import UsageDaily, UsageEvent, UsageHourly

# Upper bounds (ms) of the latency histogram kept in rollups; p95 is read from it.
LATENCY_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 10**9)


_ZERO = Decimal(0)

# What a rollup row is per: connection tests (request type "test") are kept apart from traffic.
_KEY = ("agent_id", "model", "provider", "mode", "request_type")


def _bucket_aggregates(prefix: str = "b") -> dict[str, Any]:
    return {
        f"{prefix}{i}": Count("id", filter=Q(latency_ms__lte=bound))
        for i, bound in enumerate(LATENCY_BUCKETS_MS)
    }


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


def _histogram(row: Mapping[str, Any]) -> list[int]:
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


HOUR = timedelta(hours=1)


DAY = timedelta(days=1)


def _floor_hour(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(dt: datetime) -> datetime:
    floor = _floor_hour(dt)
    return floor if floor == dt else floor + HOUR


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _ceil_day(dt: datetime) -> datetime:
    floor = _day_start(dt.astimezone(UTC).date())
    return floor if floor == dt else floor + DAY


def _rollup_rows(model: type, tenant_id: int, key: dict[str, Any], rows: Any) -> list:
    return [
        model(
            tenant_id=tenant_id,
            agent_id=r["agent_id"],
            model=r["model"],
            provider=r["provider"],
            mode=r["mode"],
            request_type=r["request_type"],
            requests=r["requests"],
            errors=r["errors"],
            input_tokens=r["input_tokens"] or 0,
            output_tokens=r["output_tokens"] or 0,
            cost_usd=r["cost_usd"] or _ZERO,
            billed_usd=r["billed_usd"] or _ZERO,
            tcu=r["tcu"] or 0,
            latency_ms_sum=r["latency_ms_sum"] or 0,
            latency_hist=r["hist"] if "hist" in r else _histogram(r),
            **key,
        )
        for r in rows
    ]


def rollup_hour(*, tenant_id: int, hour: datetime) -> int:
    """Recompute one tenant-hour from its events (idempotent: replaces the hour's rows)."""
    rows = (
        UsageEvent.objects.for_tenant(tenant_id)
        .filter(created_at__gte=hour, created_at__lt=hour + HOUR)
        .values(*_KEY)
        .annotate(**_event_aggregates(), **_bucket_aggregates())
    )
    objs = _rollup_rows(UsageHourly, tenant_id, {"hour": hour}, rows)
    with transaction.atomic():
        UsageHourly.objects.for_tenant(tenant_id).filter(hour=hour).delete()
        UsageHourly.objects.for_tenant(tenant_id).bulk_create(objs)
    return len(objs)


def rollup_day(*, tenant_id: int, day: date) -> int:
    """Recompute one tenant-day from its events: its 24 hours, then the day (idempotent)."""
    start = _day_start(day)
    written = sum(rollup_hour(tenant_id=tenant_id, hour=start + HOUR * i) for i in range(24))
    return written + _day_from_hours(tenant_id=tenant_id, day=day)


def _day_from_hours(*, tenant_id: int, day: date) -> int:
    """Recompute one tenant-day from its hourly rows (idempotent: replaces the day's rows)."""
    start = _day_start(day)
    merged: dict[tuple, dict[str, Any]] = {}
    for h in UsageHourly.objects.for_tenant(tenant_id).filter(hour__gte=start, hour__lt=start + DAY):
        key = (h.agent_id, h.model, h.provider, h.mode, h.request_type)
        row = merged.setdefault(
            key,
            {
                **dict(zip(_KEY, key, strict=True)),
                **dict.fromkeys(_SUMS, 0),
                "cost_usd": _ZERO,
                "billed_usd": _ZERO,
                "hist": [0] * len(LATENCY_BUCKETS_MS),
            },
        )
        for name in _SUMS:
            row[name] += getattr(h, name)
        row["cost_usd"] += h.cost_usd
        row["billed_usd"] += h.billed_usd
        row["hist"] = [a + b for a, b in zip(row["hist"], h.latency_hist or row["hist"], strict=False)]
    objs = _rollup_rows(UsageDaily, tenant_id, {"day": day}, merged.values())
    with transaction.atomic():
        UsageDaily.objects.for_tenant(tenant_id).filter(day=day).delete()
        UsageDaily.objects.for_tenant(tenant_id).bulk_create(objs)
    return len(objs)


_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "tcu", "latency_ms_sum")


def rollup_pending(*, now: datetime | None = None, redo_hours: int = 2) -> int:
    """Roll up every complete hour (and then every complete day) not rolled up yet; redo the last
    `redo_hours` so that late-drained events are counted. Safe to run any number of times."""
    now = now or timezone.now()
    current_hour = _floor_hour(now)
    written = 0
    firsts = (
        UsageEvent.objects.unscoped()
        .filter(created_at__lt=current_hour)
        .values("tenant_id")
        .annotate(first=Min("created_at"))
    )
    for row in firsts:
        tenant_id = row["tenant_id"]
        last = UsageHourly.objects.for_tenant(tenant_id).aggregate(m=Max("hour"))["m"]
        hour = (
            _floor_hour(row["first"])
            if last is None
            else max(_floor_hour(row["first"]), last - HOUR * (redo_hours - 1))
        )
        touched_days = set()
        while hour < current_hour:
            written += rollup_hour(tenant_id=tenant_id, hour=hour)
            touched_days.add(hour.date())
            hour += HOUR
        for day in sorted(touched_days):
            if _day_start(day) + DAY <= current_hour:  # only whole days go to the daily table
                written += _day_from_hours(tenant_id=tenant_id, day=day)
    return written


def vacuum_analyze() -> None:
    """Fresh planner statistics after a bulk load (the data generator calls it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE llm_usageevent; ANALYZE llm_usagedaily;")
