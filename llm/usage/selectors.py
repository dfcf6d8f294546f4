"""Reads of usage: the summary a page or the API shows for a range (rollups for whole hours and days up to the
tenant's watermark, live events for the rest), and a tenant's platform tokens since a moment."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from llm.models import UsageDaily, UsageEvent, UsageHourly, UsageWatermark
from llm.usage.rollups import (
    _SUMS,
    Digest,
    _ceil_day,
    _ceil_hour,
    _day_start,
    add_sums,
    empty_sums,
    event_sums,
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


_T = TypeVar("_T")

Mark = tuple[int, datetime | None, int]  # a tenant's watermark: (event id, through, version)


@dataclass(frozen=True, slots=True)
class Sources:
    """What to read for a range, without overlap: daily rows, hourly rows and the events the rollups do not hold
    (both ends of the range the rollups cannot split, and every event past the tenant's watermark)."""

    daily: QuerySet[UsageDaily]
    hourly: QuerySet[UsageHourly]
    events: QuerySet[UsageEvent]


def _mark(tenant_id: int) -> Mark:
    row = UsageWatermark.objects.for_tenant(tenant_id).values_list("event_id", "through", "version").first()
    return row or (0, None, -1)


def sources(tenant_id: int, since: datetime | None, mark: Mark, *, hourly_only: bool = False) -> Sources:
    """The rows to read for [since, now) given the tenant's watermark (`hourly_only`: no daily rows, for hour
    buckets)."""
    upto, through, _ = mark
    daily = UsageDaily.objects.for_tenant(tenant_id)
    hourly = UsageHourly.objects.for_tenant(tenant_id)
    events = UsageEvent.objects.for_tenant(tenant_id)
    if through is None:  # never rolled up: everything is live
        return Sources(daily.none(), hourly.none(), events.filter(created_at__gte=since) if since else events)
    h0 = _ceil_hour(since) if since else None
    d0 = _ceil_day(since) if since else None
    days_end = _day_start(through.astimezone(UTC).date())  # the days wholly rolled up end here
    hour_q = Q(hour__lt=through) & (Q(hour__gte=h0) if h0 else Q())
    if hourly_only or (d0 is not None and d0 >= days_end):
        daily = daily.none()
    else:
        daily = daily.filter(day__lt=days_end.date(), **({"day__gte": d0.date()} if d0 else {}))
        hour_q &= Q(hour__gte=days_end) | (Q(hour__lt=d0) if d0 else Q(pk__in=[]))
    live = Q(created_at__gte=through) | Q(id__gt=upto)
    if since is not None:
        live = Q(created_at__gte=since) & (Q(created_at__lt=h0) | live)
    return Sources(daily, hourly.filter(hour_q), events.filter(live))


def consistent(tenant_id: int, read: Callable[[Mark], _T]) -> _T:
    """`read` with the tenant's watermark, again if a rollup wrote meanwhile (its rows and watermark change in
    one transaction, but a read is several statements)."""
    for _ in range(3):
        mark = _mark(tenant_id)
        result = read(mark)
        if _mark(tenant_id)[2] == mark[2]:
            break
    return result


def platform_tokens_since(*, tenant_id: int, since: datetime) -> int:
    """Input + output tokens of platform-mode calls since a time, from rollups plus the events past them (fast)."""
    return sum(platform_tokens_by_agent_since(tenant_id=tenant_id, since=since).values())


def platform_tokens_by_agent_since(*, tenant_id: int, since: datetime) -> dict[int | None, int]:
    """Platform-mode input + output tokens since a time per agent id (None: calls without an agent), from rollups
    plus the events past them (fast). Connection tests on platform keys count: they are billed."""

    def read(mark: Mark) -> dict[int | None, int]:
        totals: dict[int | None, int] = defaultdict(int)
        src = sources(tenant_id, since, mark)
        for rows in (src.daily, src.hourly, src.events):
            grouped = rows.filter(mode="platform").order_by().values("agent_id")
            for row in grouped.annotate(t=Sum("input_tokens") + Sum("output_tokens")):
                totals[row["agent_id"]] += int(row["t"] or 0)
        return {agent_id: tokens for agent_id, tokens in totals.items() if tokens}

    return consistent(tenant_id, read)


def usage_summary(
    *, tenant: Tenant, range_name: str = "30d", agent: Agent | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The `/api/llm/usage` body: totals, by model, by day and by agent for the range, and the connection tests
    apart. Exact whatever the rollups' lag: rollups up to the tenant's watermark, the events past it."""
    if range_name not in RANGES:
        raise ValueError(range_name)
    now = now or timezone.now()
    span = RANGES[range_name]
    since = now - span if span else None
    groups = consistent(tenant.id, lambda mark: _read(tenant, sources(tenant.id, since, mark), agent))
    agent_slugs = dict(Agent.objects.for_tenant(tenant).values_list("id", "slug"))
    tests = _render(groups["tests"].get(("test",), empty_sums()))
    return {
        "range": range_name,
        "totals": _render(groups["totals"].get((), empty_sums())),
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


Groups = dict[str, dict[tuple, dict[str, Any]]]


def _read(tenant: Tenant, src: Sources, agent: Agent | None) -> Groups:
    daily, hourly, events = src.daily, src.hourly, src.events
    if agent is not None:
        daily, hourly, events = (
            daily.filter(agent=agent),
            hourly.filter(agent=agent),
            events.filter(agent=agent),
        )
    groups: Groups = {"totals": {}, "model": {}, "day": {}, "agent": {}, "tests": {}}
    fields = (
        "model",
        "provider",
        "agent_id",
        "request_type",
        *_SUMS,
        "cost_usd",
        "billed_usd",
        "latency_digest",
    )
    for r in daily.values("day", *fields):
        _fold(groups, r, r["latency_digest"], r["day"])
    for r in hourly.values("hour", *fields):
        _fold(groups, r, r["latency_digest"], r["hour"].astimezone(UTC).date())
    live = event_sums(
        events, ("model", "provider", "agent_id", "request_type"), day=TruncDate("created_at", tzinfo=UTC)
    )
    for r in live:
        _fold(groups, r, r["digest"], r["day"])
    return groups


def _fold(groups: Groups, r: Mapping[str, Any], digest: Digest, day: date) -> None:
    if r["request_type"] == "test":
        add_sums(groups["tests"].setdefault(("test",), empty_sums()), r, digest)
        return
    add_sums(groups["totals"].setdefault((), empty_sums()), r, digest)
    for name, key in (("model", (r["model"], r["provider"])), ("day", (day,)), ("agent", (r["agent_id"],))):
        add_sums(groups[name].setdefault(key, empty_sums()), r, digest)


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
        "p95_latency_ms": p95_from(b["digest"]),
    }
