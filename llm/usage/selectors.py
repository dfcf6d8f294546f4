"""Reads of usage: the summary a page or the API shows for a range (rollups for whole hours and days, live events
for the rest), and a tenant's platform tokens since a moment."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Max, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from llm.models import UsageDaily, UsageEvent, UsageHourly
from llm.usage.rollups import (
    _SUMS,
    _ZERO,
    DAY,
    HOUR,
    LATENCY_BUCKETS_MS,
    _bucket_aggregates,
    _ceil_day,
    _ceil_hour,
    _day_start,
    _event_aggregates,
    _histogram,
    p95_from,
)
from tenants.models import Agent, Tenant

RANGES = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "all": None,
}


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
    return sum(platform_tokens_by_agent_since(tenant_id=tenant_id, since=since).values())


def platform_tokens_by_agent_since(*, tenant_id: int, since: datetime) -> dict[int | None, int]:
    """Platform-mode input + output tokens since a time per agent id (None: calls without an agent), from rollups
    plus the live hour (fast)."""
    last_day = UsageDaily.objects.for_tenant(tenant_id).aggregate(m=Max("day"))["m"]
    last_hour = UsageHourly.objects.for_tenant(tenant_id).aggregate(m=Max("hour"))["m"]
    (d0, d1), hour_spans, event_spans = _segments(
        since, _day_start(last_day) + DAY if last_day else None, last_hour + HOUR if last_hour else None
    )
    totals: dict[int | None, int] = {}

    def add(rows: Any) -> None:
        for row in rows.order_by().values("agent_id").annotate(t=Sum("input_tokens") + Sum("output_tokens")):
            totals[row["agent_id"]] = totals.get(row["agent_id"], 0) + int(row["t"] or 0)

    daily = UsageDaily.objects.for_tenant(tenant_id).filter(
        mode="platform", day__lt=d1.date() if d1.year > 1 else date.min
    )
    if d0 is not None:
        daily = daily.filter(day__gte=d0.date())
    add(daily)
    if hour_spans:
        hourly_q = Q()
        for a, b in hour_spans:
            hourly_q |= Q(hour__gte=a, hour__lt=b)
        add(UsageHourly.objects.for_tenant(tenant_id).filter(mode="platform").filter(hourly_q))
    events_q = Q()
    for a, e in event_spans:
        events_q |= Q(created_at__gte=a) if e is None else Q(created_at__gte=a, created_at__lt=e)
    add(UsageEvent.objects.for_tenant(tenant_id).filter(mode="platform").filter(events_q))
    return {agent_id: tokens for agent_id, tokens in totals.items() if tokens}


def usage_summary(
    *, tenant: Tenant, range_name: str = "30d", agent: Agent | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The `/api/llm/usage` body: totals, by model, by day and by agent for the range."""
    if range_name not in RANGES:
        raise ValueError(range_name)
    now = now or timezone.now()
    span = RANGES[range_name]
    since = now - span if span else None
    last_day = UsageDaily.objects.for_tenant(tenant).aggregate(m=Max("day"))["m"]
    last_hour = UsageHourly.objects.for_tenant(tenant).aggregate(m=Max("hour"))["m"]
    (d0, d1), hour_spans, event_spans = _segments(
        since, _day_start(last_day) + DAY if last_day else None, last_hour + HOUR if last_hour else None
    )

    daily = UsageDaily.objects.for_tenant(tenant).filter(day__lt=d1.date() if d1.year > 1 else date.min)
    if d0 is not None:
        daily = daily.filter(day__gte=d0.date())
    hourly_q = Q()
    for a, b in hour_spans:
        hourly_q |= Q(hour__gte=a, hour__lt=b)
    hourly = (
        UsageHourly.objects.for_tenant(tenant).filter(hourly_q)
        if hour_spans
        else UsageHourly.objects.for_tenant(tenant).none()
    )
    events_q = Q()
    for a, b in event_spans:
        events_q |= Q(created_at__gte=a) if b is None else Q(created_at__gte=a, created_at__lt=b)
    events = UsageEvent.objects.for_tenant(tenant).filter(events_q)
    if agent is not None:
        daily, hourly, events = (
            daily.filter(agent=agent),
            hourly.filter(agent=agent),
            events.filter(agent=agent),
        )

    groups: dict[str, dict[tuple, dict[str, Any]]] = {"model": {}, "day": {}, "agent": {}, "tests": {}}
    totals = _empty()
    fields = (
        "model",
        "provider",
        "agent_id",
        "request_type",
        *_SUMS,
        "cost_usd",
        "billed_usd",
        "latency_hist",
    )
    for r in daily.values("day", *fields):
        _fold(groups, totals, r, list(r["latency_hist"]) or [0] * len(LATENCY_BUCKETS_MS), r["day"])
    for r in hourly.values("hour", *fields):
        _fold(
            groups,
            totals,
            r,
            list(r["latency_hist"]) or [0] * len(LATENCY_BUCKETS_MS),
            r["hour"].astimezone(UTC).date(),
        )
    live = (
        events.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "model", "provider", "agent_id", "request_type")
        .annotate(**_event_aggregates(), **_bucket_aggregates())
    )
    for r in live:
        _fold(groups, totals, r, _histogram(r), r["day"])

    agent_slugs = dict(Agent.objects.for_tenant(tenant).values_list("id", "slug"))
    tests = _render(groups["tests"].get(("test",), _empty()))
    return {
        "range": range_name,
        "totals": _render(totals),
        # Connection tests, apart from the traffic above (platform-key tests are billed all the same).
        "tests": {name: tests[name] for name in ("requests", "errors", "cost_usd", "billed_usd", "tcu")},
        "by_model": sorted(
            ({"model": k[0], "provider": k[1], **_render(v)} for k, v in groups["model"].items()),
            key=lambda x: (-x["requests"], x["model"]),
        ),
        "by_day": [{"day": k[0].isoformat(), **_render(v)} for k, v in sorted(groups["day"].items())],
        "by_agent": sorted(
            (
                {"agent": agent_slugs.get(k[0]) if k[0] else None, **_render(v)}
                for k, v in groups["agent"].items()
            ),
            key=lambda x: (-x["requests"], x["agent"] or ""),
        ),
    }


def _empty() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "tcu": 0,
        "latency_ms_sum": 0,
        "cost_usd": _ZERO,
        "billed_usd": _ZERO,
        "hist": [0] * len(LATENCY_BUCKETS_MS),
    }


def _add(bucket: dict[str, Any], r: dict[str, Any], hist: list[int]) -> None:
    for name in _SUMS:
        bucket[name] += int(r.get(name) or 0)
    bucket["cost_usd"] += r.get("cost_usd") or _ZERO
    bucket["billed_usd"] += r.get("billed_usd") or _ZERO
    bucket["hist"] = [a + b for a, b in zip(bucket["hist"], hist, strict=False)]


def _fold(groups, totals, r, hist, day) -> None:
    if r["request_type"] == "test":
        _add(groups["tests"].setdefault(("test",), _empty()), r, hist)
        return
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
