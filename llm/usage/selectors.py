"""Reads of usage: the summary a page or the API shows for a range (rollups for whole hours and days up to the
tenant's watermark, live events for the rest), and a tenant's platform tokens since a moment."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.core.cache import cache
from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from llm.config.catalog_data import PLATFORM_DEFAULT_MODEL
from llm.config.versions import global_version
from llm.models import CatalogModel, CostBaseline, UsageDaily, UsageEvent, UsageHourly, UsageWatermark
from llm.usage.labels import ModelNames, mode_label
from llm.usage.rollups import (
    _SUMS,
    HOUR,
    Digest,
    _ceil_day,
    _ceil_hour,
    _day_start,
    add_sums,
    empty_sums,
    event_sums,
    latest_event_id,
    p95_from,
    seal_event_id,
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

# The figures of a total, a breakdown's row or a CSV row.
METRICS = (
    "requests",
    "errors",
    "error_rate",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "billed_usd",
    "tcu",
    "avg_latency_ms",
    "p95_latency_ms",
)

Mark = tuple[int, datetime | None, int]  # a tenant's watermark: (event id, through, version)


@dataclass(frozen=True, slots=True)
class Sources:
    """What to read for a range, without overlap: daily rows, hourly rows, the events of the range's first
    partial hour (`edge`: the rollups cannot split it) and the events past the tenant's watermark (`live`)."""

    daily: QuerySet[UsageDaily]
    hourly: QuerySet[UsageHourly]
    edge: QuerySet[UsageEvent]
    live: QuerySet[UsageEvent]

    def events(self) -> tuple[QuerySet[UsageEvent], QuerySet[UsageEvent]]:
        return self.edge, self.live


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
        live = events.filter(created_at__gte=since) if since else events
        return Sources(daily.none(), hourly.none(), events.none(), live)
    h0 = _ceil_hour(since) if since else None
    d0 = _ceil_day(since) if since else None
    days_end = _day_start(through.astimezone(UTC).date())  # the days wholly rolled up end here
    hour_q = Q(hour__lt=through) & (Q(hour__gte=h0) if h0 else Q())
    if hourly_only or (d0 is not None and d0 >= days_end):
        daily = daily.none()
    else:
        daily = daily.filter(day__lt=days_end.date(), **({"day__gte": d0.date()} if d0 else {}))
        hour_q &= Q(hour__gte=days_end) | (Q(hour__lt=d0) if d0 else Q(pk__in=[]))
    live = events.filter(Q(created_at__gte=through) | Q(id__gt=upto))
    if since is None:
        return Sources(daily, hourly.filter(hour_q), events.none(), live)
    edge = events.filter(created_at__gte=since, created_at__lt=h0)
    return Sources(daily, hourly.filter(hour_q), edge, live.filter(created_at__gte=h0))


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
        for rows in (src.daily, src.hourly, *src.events()):
            grouped = rows.filter(mode="platform").order_by().values("agent_id")
            for row in grouped.annotate(t=Sum("input_tokens") + Sum("output_tokens")):
                totals[row["agent_id"]] += int(row["t"] or 0)
        return {agent_id: tokens for agent_id, tokens in totals.items() if tokens}

    return consistent(tenant_id, read)


def usage_summary(
    *,
    tenant: Tenant,
    range_name: str = "30d",
    agent: Agent | None = None,
    now: datetime | None = None,
    detail: bool = False,
) -> dict[str, Any]:
    """The `/api/llm/usage` body: totals, by model (as the user knows it, per mode), by day (and by hour for 24h)
    and by agent for the range, and the connection tests apart. Exact whatever the rollups' lag: rollups up to
    the tenant's watermark, the events past it. `detail` adds `rows`: per day × model × agent (the CSV)."""
    if range_name not in RANGES:
        raise ValueError(range_name)
    now = now or timezone.now()
    span = RANGES[range_name]
    since = now - span if span else None
    hourly = range_name == "24h"
    names = ModelNames()
    groups = consistent(
        tenant.id,
        lambda mark: _read(
            sources(tenant.id, since, mark, hourly_only=hourly),
            agent,
            names,
            hourly=hourly,
            detail=detail,
            rolled_key=_rolled_key(tenant.id, mark, since, agent, hourly=hourly, detail=detail),
        ),
    )
    _remember_read(tenant.id, (range_name, agent.pk if agent else None, detail))
    agent_slugs = dict(Agent.objects.for_tenant(tenant).values_list("id", "slug"))
    tests = _render(groups["tests"].get(("test",), empty_sums()))
    totals = groups["totals"].get((), empty_sums())
    body: dict[str, Any] = {
        "range": range_name,
        "totals": _render(totals),
        "baseline": baseline_comparison(totals),
        # Connection tests, apart from the traffic above (platform-key tests are billed all the same).
        "tests": {name: tests[name] for name in ("requests", "errors", "cost_usd", "billed_usd", "tcu")},
        "by_model": sorted(
            (_model_row(k, v, names) for k, v in groups["model"].items()),
            key=lambda x: (-x["requests"], x["label"], x["mode"]),
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
    if hourly:
        body["by_hour"] = _hours(groups["hour"], since or now, now)
    if detail:
        body["rows"] = [
            {
                "day": day.isoformat(),
                "model": model,
                "model_name": names.known_name(model, mode),
                "mode": mode_label(mode),
                "agent": agent_slugs.get(agent_id) if agent_id else None,
                **_render(v),
            }
            for (day, model, mode, agent_id), v in sorted(
                groups["rows"].items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] or 0)
            )
        ]
    return body


def baseline_comparison(sums: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the calls would have cost on the baseline model (its list prices × their tokens) and the saving, or
    None without a priced one. The baseline is the model an admin set (admin: Cost baseline), else the platform default."""
    chosen = CostBaseline.objects.values_list("model_id", flat=True).first() or PLATFORM_DEFAULT_MODEL
    baseline = CatalogModel.objects.filter(pk=chosen).only("id", "name", *_PRICES).first()
    if baseline is None or baseline.input_usd_per_mtok is None or baseline.output_usd_per_mtok is None:
        return None
    # Priced as the calls were: their prompt-cache reads and writes at the baseline's cache prices.
    read, written = int(sums.get("cache_read_tokens") or 0), int(sums.get("cache_write_tokens") or 0)
    in_price = baseline.input_usd_per_mtok
    on_baseline = (
        max(sums["input_tokens"] - read - written, 0) * in_price
        + read * _or(baseline.cache_read_usd_per_mtok, in_price)
        + written * _or(baseline.cache_write_usd_per_mtok, in_price)
        + sums["output_tokens"] * baseline.output_usd_per_mtok
    ) / 1_000_000
    saving = on_baseline - sums["cost_usd"]
    return {
        "model": baseline.id,
        "name": baseline.name,
        "cost_usd": float(round(on_baseline, 6)),
        "saving_usd": float(round(saving, 6)),
        "saving_pct": round(float(100 * saving / on_baseline), 1) if on_baseline else 0.0,
    }


_PRICES = ("input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok", "cache_write_usd_per_mtok")


def _or(price: Decimal | None, otherwise: Decimal) -> Decimal:
    return otherwise if price is None else price


def _hours(found: dict[tuple, dict[str, Any]], since: datetime, now: datetime) -> list[dict[str, Any]]:
    """Every hour of the range, those without calls too (a chart's axis)."""
    hour, last = _ceil_hour(since) - HOUR, now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour <= last:
        out.append({"hour": hour.isoformat(), **_render(found.get((hour,), empty_sums()))})
        hour += HOUR
    return out


def _model_row(key: tuple, sums: dict[str, Any], names: ModelNames) -> dict[str, Any]:
    model, mode = key
    providers = sorted(sums["providers"].items(), key=lambda kv: -kv[1])
    return {
        "model": model,
        "label": names.known_name(model, mode),
        "mode": mode,
        "mode_label": mode_label(mode),
        "provider": providers[0][0] if providers else "",
        "provider_label": ", ".join(names.provider(p) for p, _ in providers),
        **_render(sums),
    }


Groups = dict[str, dict[tuple, dict[str, Any]]]


def _remember_read(tenant_id: int, shape: tuple[str, int | None, bool]) -> None:
    key = _RECENT_READS.format(tenant_id)
    shapes: list[tuple[str, int | None, bool]] = cache.get(key) or []
    if shape in shapes:
        cache.touch(key, _RECENT_TTL)
    else:
        cache.set(key, [shape, *shapes][:_RECENT_MAX], _RECENT_TTL)


def warm_recent_reads(tenant_ids: Iterable[int]) -> int:
    """Read again, after a rollup wrote a tenant's rows, what the tenant read in the last hour (its ranges, agents,
    CSV), so the folding a new watermark version needs is paid here, not by the next page view. Returns the reads
    made."""
    done = 0
    for tenant_id in tenant_ids:
        shapes = cache.get(_RECENT_READS.format(tenant_id)) or []
        tenant = Tenant.objects.filter(pk=tenant_id).first() if shapes else None
        if tenant is None:
            continue
        agents = Agent.objects.for_tenant(tenant).in_bulk([a for _, a, _ in shapes if a])
        for range_name, agent_id, detail in shapes:
            agent = agents.get(agent_id) if agent_id else None
            if range_name in RANGES and (agent_id is None or agent is not None):
                usage_summary(tenant=tenant, range_name=range_name, agent=agent, detail=detail)
                done += 1
    return done


# A tenant's reads of the last hour (range, agent, detail), at most _RECENT_MAX of them: warmed after each rollup.
_RECENT_READS = "llm:usage:recent:{}"
_RECENT_TTL = 3600
_RECENT_MAX = 8


def _rolled_key(
    tenant_id: int, mark: Mark, since: datetime | None, agent: Agent | None, *, hourly: bool, detail: bool
) -> str:
    """The cache key of a read's folded rollups and sealed events: it changes with every rollup write (the
    watermark's version, not its id: a run that only moves an idle tenant's mark on changes no figure), the
    range's first hour and the catalog (model names)."""
    start = _ceil_hour(since).isoformat() if since else "all"
    shape = f"{agent.pk if agent else '-'}:{int(hourly)}:{int(detail)}"
    return f"llm:usage:read:{tenant_id}:{mark[2]}:{start}:{shape}:{global_version()}"


def _read(
    src: Sources,
    agent: Agent | None,
    names: ModelNames,
    *,
    hourly: bool,
    detail: bool,
    rolled_key: str,
) -> Groups:
    """The groups of a read: the rollups' rows and the events past the watermark up to a sealed id are folded
    once and cached (most of the work at millions of events, or with a backlog the schedule has not rolled up);
    each read adds the events after the sealed id and the range's first partial hour, and moves the seal on when
    many events came since."""
    daily, hourly_rows, edge, live = src.daily, src.hourly, src.edge, src.live
    if agent is not None:
        daily, hourly_rows, edge, live = (
            daily.filter(agent=agent),
            hourly_rows.filter(agent=agent),
            edge.filter(agent=agent),
            live.filter(agent=agent),
        )
    cached: tuple[Groups, int] | None = cache.get(rolled_key)
    if cached is None:
        groups: Groups = {name: {} for name in ("totals", "model", "day", "hour", "agent", "tests", "rows")}
        fields = ("model", "provider", "mode", "agent_id", "request_type", *_SUMS, "cost_usd", "billed_usd")
        for r in daily.values("day", *fields, "latency_digest"):
            _fold(groups, names, r, r["latency_digest"], r["day"], None, detail=detail)
        for r in hourly_rows.values("hour", *fields, "latency_digest"):
            at = r["hour"].astimezone(UTC)
            _fold(groups, names, r, r["latency_digest"], at.date(), at if hourly else None, detail=detail)
        sealed = 0
    else:
        groups, sealed = cached
    top = seal_event_id() if cached is None or latest_event_id() - sealed > _SEAL_AFTER else None
    if top is not None and top > sealed:
        _fold_events(groups, names, live.filter(id__gt=sealed, id__lte=top), hourly=hourly, detail=detail)
        sealed = top
    if cached is None or top is not None:
        cache.set(rolled_key, (groups, sealed), _ROLLED_TTL)
    fresh = live.filter(id__gt=sealed) if sealed else live
    _fold_events(groups, names, edge | fresh, hourly=hourly, detail=detail)
    return groups


_ROLLED_TTL = 3600
# Move a read's seal on when the events table grew by more than this many ids since (ids are shared by all
# tenants, so this bounds the tenant's unsealed events a read sums live).
_SEAL_AFTER = 5000


def _fold_events(
    groups: Groups, names: ModelNames, events: QuerySet[UsageEvent], *, hourly: bool, detail: bool
) -> None:
    if events.query.is_empty():
        return
    fields = ("model", "provider", "mode", "agent_id", "request_type")
    # One aggregate: per day, and for the 24h view per hour too (its hours' latency digests come with it).
    exprs: dict[str, TruncDate | TruncHour] = {"day": TruncDate("created_at", tzinfo=UTC)}
    if hourly:
        exprs["hour"] = TruncHour("created_at", tzinfo=UTC)
    for row in event_sums(events, fields, **exprs):
        hour = row["hour"].astimezone(UTC) if hourly else None
        _fold(groups, names, row, row["digest"], row["day"], hour, detail=detail)


def _fold(
    groups: Groups,
    names: ModelNames,
    r: Mapping[str, Any],
    digest: Digest,
    day: date,
    hour: datetime | None,
    *,
    detail: bool,
) -> None:
    if r["request_type"] == "test":
        add_sums(groups["tests"].setdefault(("test",), empty_sums()), r, digest)
        return
    model = names.known_id(r["model"], r["mode"])
    keys = {
        "totals": (),
        "model": (model, r["mode"]),
        "day": (day,),
        "agent": (r["agent_id"],),
    }
    if detail:
        keys["rows"] = (day, model, r["mode"], r["agent_id"])
    for name, key in keys.items():
        add_sums(groups[name].setdefault(key, empty_sums()), r, digest)
    if hour is not None:
        add_sums(groups["hour"].setdefault((hour,), empty_sums()), r, digest)
    providers = groups["model"][keys["model"]].setdefault("providers", {})
    providers[r["provider"]] = providers.get(r["provider"], 0) + int(r.get("requests") or 0)


def _render(b: dict[str, Any]) -> dict[str, Any]:
    requests = b["requests"]
    return {
        "requests": requests,
        "errors": b["errors"],
        "error_rate": round(b["errors"] / requests, 4) if requests else 0.0,
        "input_tokens": b["input_tokens"],
        "output_tokens": b["output_tokens"],
        # parts of the two above: read from and written to the providers' prompt caches, spent reasoning
        "cache_read_tokens": b["cache_read_tokens"],
        "cache_write_tokens": b["cache_write_tokens"],
        "reasoning_tokens": b["reasoning_tokens"],
        "cost_usd": float(round(b["cost_usd"], 6)),
        "billed_usd": float(round(b["billed_usd"], 6)),
        "tcu": b["tcu"],
        "avg_latency_ms": round(b["latency_ms_sum"] / requests, 1) if requests else 0.0,
        "p95_latency_ms": p95_from(b["digest"]),
    }
