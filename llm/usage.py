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

from .models import UsageDaily, UsageEvent, UsageHourly

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
            tenant_id=tenant_id, agent_id=r["agent_id"], model=r["model"], provider=r["provider"], mode=r["mode"],
            requests=r["requests"], errors=r["errors"], input_tokens=r["input_tokens"] or 0,
            output_tokens=r["output_tokens"] or 0, cost_usd=r["cost_usd"] or _ZERO,
            billed_usd=r["billed_usd"] or _ZERO, tcu=r["tcu"] or 0, latency_ms_sum=r["latency_ms_sum"] or 0,
            latency_hist=r["hist"] if "hist" in r else _histogram(r), **key,
        )
        for r in rows
    ]


def rollup_hour(*, tenant_id: int, hour: datetime) -> int:
    """Recompute one tenant-hour from its events (idempotent: replaces the hour's rows)."""
    rows = (
        UsageEvent.objects.unscoped()
        .filter(tenant_id=tenant_id, created_at__gte=hour, created_at__lt=hour + HOUR)
        .values("agent_id", "model", "provider", "mode")
        .annotate(**_event_aggregates(), **_bucket_aggregates())
    )
    objs = _rollup_rows(UsageHourly, tenant_id, {"hour": hour}, rows)
    with transaction.atomic():
        UsageHourly.objects.unscoped().filter(tenant_id=tenant_id, hour=hour).delete()
        UsageHourly.objects.unscoped().bulk_create(objs)
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
    for h in UsageHourly.objects.unscoped().filter(tenant_id=tenant_id, hour__gte=start, hour__lt=start + DAY):
        key = (h.agent_id, h.model, h.provider, h.mode)
        row = merged.setdefault(key, {"agent_id": h.agent_id, "model": h.model, "provider": h.provider,
                                      "mode": h.mode, **dict.fromkeys(_SUMS, 0), "cost_usd": _ZERO,
                                      "billed_usd": _ZERO, "hist": [0] * len(LATENCY_BUCKETS_MS)})
        for name in _SUMS:
            row[name] += getattr(h, name)
        row["cost_usd"] += h.cost_usd
        row["billed_usd"] += h.billed_usd
        row["hist"] = [a + b for a, b in zip(row["hist"], h.latency_hist or row["hist"], strict=False)]
    objs = _rollup_rows(UsageDaily, tenant_id, {"day": day}, merged.values())
    with transaction.atomic():
        UsageDaily.objects.unscoped().filter(tenant_id=tenant_id, day=day).delete()
        UsageDaily.objects.unscoped().bulk_create(objs)
    return len(objs)


_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "tcu", "latency_ms_sum")


def rollup_pending(*, now: datetime | None = None, redo_hours: int = 2) -> int:
    """Roll up every complete hour (and then every complete day) not rolled up yet; redo the last
    `redo_hours` so that late-drained events are counted. Safe to run any number of times."""
    now = now or timezone.now()
    current_hour = _floor_hour(now)
    written = 0
    firsts = (UsageEvent.objects.unscoped().filter(created_at__lt=current_hour)
              .values("tenant_id").annotate(first=Min("created_at")))
    for row in firsts:
        tenant_id = row["tenant_id"]
        last = UsageHourly.objects.unscoped().filter(tenant_id=tenant_id).aggregate(m=Max("hour"))["m"]
        hour = _floor_hour(row["first"]) if last is None else max(_floor_hour(row["first"]),
                                                                   last - HOUR * (redo_hours - 1))
        touched_days = set()
        while hour < current_hour:
            written += rollup_hour(tenant_id=tenant_id, hour=hour)
            touched_days.add(hour.date())
            hour += HOUR
        for day in sorted(touched_days):
            if _day_start(day) + DAY <= current_hour:  # only whole days go to the daily table
                written += _day_from_hours(tenant_id=tenant_id, day=day)
    return written


# --- the usage selector ----------------------------------------------------------------------------

def _segments(since: datetime | None, daily_end: datetime | None, hourly_end: datetime | None):
    """Split [since, now) into what daily rows, hourly rows and live events each cover, without overlap."""
    if since is None:
        h0 = d0 = None
    else:
        h0, d0 = _ceil_hour(since), _ceil_day(since)
    if hourly_end is None:
        hourly_end = h0 if h0 is not None else datetime.min.replace(tzinfo=UTC)
    if daily_end is None or (d0 is not None and daily_end < d0):
        daily_end = d0 if d0 is not None else datetime.min.replace(tzinfo=UTC)
    daily_end = min(daily_end, hourly_end)
    days = (d0, daily_end)
    hours = []
    if h0 is not None:
        hours.append((h0, min(d0 or h0, daily_end)))
    hours.append((max(daily_end, h0) if h0 is not None else daily_end, hourly_end))
    hours = [(a, b) for a, b in hours if a < b]
    live_start = max(hourly_end, since) if since is not None else hourly_end
    events: list[tuple[datetime, datetime | None]] = [(live_start, None)]
    if since is not None and h0 is not None and since < min(h0, hourly_end):
        events.append((since, min(h0, hourly_end)))
    return days, hours, events


def platform_tokens_since(*, tenant_id: int, since: datetime) -> int:
    """Input + output tokens of platform-mode calls since a time, from rollups plus the live hour (fast)."""
    last_day = UsageDaily.objects.unscoped().filter(tenant_id=tenant_id).aggregate(m=Max("day"))["m"]
    last_hour = UsageHourly.objects.unscoped().filter(tenant_id=tenant_id).aggregate(m=Max("hour"))["m"]
    (d0, d1), hour_spans, event_spans = _segments(
        since, _day_start(last_day) + DAY if last_day else None, last_hour + HOUR if last_hour else None)
    total = 0
    tokens = Sum("input_tokens") + Sum("output_tokens")
    daily = UsageDaily.objects.unscoped().filter(tenant_id=tenant_id, mode="platform",
                                                 day__lt=d1.date() if d1.year > 1 else date.min)
    if d0 is not None:
        daily = daily.filter(day__gte=d0.date())
    total += daily.aggregate(t=tokens)["t"] or 0
    if hour_spans:
        hourly_q = Q()
        for a, b in hour_spans:
            hourly_q |= Q(hour__gte=a, hour__lt=b)
        total += UsageHourly.objects.unscoped().filter(tenant_id=tenant_id, mode="platform").filter(hourly_q) \
            .aggregate(t=tokens)["t"] or 0
    events_q = Q()
    for a, e in event_spans:
        events_q |= Q(created_at__gte=a) if e is None else Q(created_at__gte=a, created_at__lt=e)
    total += UsageEvent.objects.unscoped().filter(tenant_id=tenant_id, mode="platform").filter(events_q) \
        .aggregate(t=tokens)["t"] or 0
    return int(total)


def usage_summary(*, tenant: Tenant, range_name: str = "30d", agent: Agent | None = None,
                  now: datetime | None = None) -> dict[str, Any]:
    """The `/api/llm/usage` body: totals, by model, by day and by agent for the range."""
    if range_name not in RANGES:
        raise ValueError(range_name)
    now = now or timezone.now()
    span = RANGES[range_name]
    since = now - span if span else None
    last_day = UsageDaily.objects.unscoped().filter(tenant=tenant).aggregate(m=Max("day"))["m"]
    last_hour = UsageHourly.objects.unscoped().filter(tenant=tenant).aggregate(m=Max("hour"))["m"]
    (d0, d1), hour_spans, event_spans = _segments(
        since, _day_start(last_day) + DAY if last_day else None, last_hour + HOUR if last_hour else None)

    daily = UsageDaily.objects.unscoped().filter(tenant=tenant, day__lt=d1.date() if d1.year > 1 else date.min)
    if d0 is not None:
        daily = daily.filter(day__gte=d0.date())
    hourly_q = Q()
    for a, b in hour_spans:
        hourly_q |= Q(hour__gte=a, hour__lt=b)
    hourly = UsageHourly.objects.unscoped().filter(tenant=tenant).filter(hourly_q) if hour_spans \
        else UsageHourly.objects.none()
    events_q = Q()
    for a, b in event_spans:
        events_q |= Q(created_at__gte=a) if b is None else Q(created_at__gte=a, created_at__lt=b)
    events = UsageEvent.objects.unscoped().filter(tenant=tenant).filter(events_q)
    if agent is not None:
        daily, hourly, events = daily.filter(agent=agent), hourly.filter(agent=agent), events.filter(agent=agent)

    groups: dict[str, dict[tuple, dict[str, Any]]] = {"model": {}, "day": {}, "agent": {}}
    totals = _empty()
    fields = ("model", "provider", "agent_id", *_SUMS, "cost_usd", "billed_usd", "latency_hist")
    for r in daily.values("day", *fields):
        _fold(groups, totals, r, list(r["latency_hist"]) or [0] * len(LATENCY_BUCKETS_MS), r["day"])
    for r in hourly.values("hour", *fields):
        _fold(groups, totals, r, list(r["latency_hist"]) or [0] * len(LATENCY_BUCKETS_MS),
              r["hour"].astimezone(UTC).date())
    live = (events.annotate(day=TruncDate("created_at", tzinfo=UTC))
            .values("day", "model", "provider", "agent_id")
            .annotate(**_event_aggregates(), **_bucket_aggregates()))
    for r in live:
        _fold(groups, totals, r, _histogram(r), r["day"])

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


def _add(bucket: dict[str, Any], r: dict[str, Any], hist: list[int]) -> None:
    for name in _SUMS:
        bucket[name] += int(r.get(name) or 0)
    bucket["cost_usd"] += r.get("cost_usd") or _ZERO
    bucket["billed_usd"] += r.get("billed_usd") or _ZERO
    bucket["hist"] = [a + b for a, b in zip(bucket["hist"], hist, strict=False)]


def _fold(groups, totals, r, hist, day) -> None:
    _add(totals, r, hist)
    for name, key in (("model", (r["model"], r["provider"])), ("day", (day,)), ("agent", (r["agent_id"],))):
        _add(groups[name].setdefault(key, _empty()), r, hist)


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


__all__ = ["LATENCY_BUCKETS_MS", "RANGES", "p95_from", "rollup_day", "rollup_hour", "rollup_pending",
           "usage_summary"]
