"""Usage rollups: events summed per hour (UsageHourly) and day (UsageDaily) by the schedule, idempotently, with
a latency digest so p95 works from rollups."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Count, F, IntegerField, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Floor, Greatest, Ln, TruncHour
from django.utils import timezone

from llm.models import UsageDaily, UsageEvent, UsageHourly, UsageWatermark

# The latency digest: per logarithmic bucket (DIGEST_STEPS buckets per factor e, each ~5 % wide, keyed by the
# bucket's number) the calls in it and their summed latency; a percentile is read as its bucket's mean, so it is
# within the bucket's ~5 % of the events' own (exact when the bucket's calls took the same time).
DIGEST_STEPS = 20

_ZERO = Decimal(0)

# What a rollup row is per: connection tests (request type "test") are kept apart from traffic.
_KEY = ("agent_id", "model", "provider", "mode", "request_type")

_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",  # parts of the input and output tokens: read from / written to prompt caches, reasoning
    "cache_write_tokens",
    "reasoning_tokens",
    "tcu",
    "latency_ms_sum",
)


def _event_aggregates() -> dict[str, Any]:
    return {
        "requests": Count("id"),
        "errors": Count("id", filter=~Q(status="ok")),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cache_read_tokens": Sum("cached_tokens"),
        "cache_write_tokens": Sum("cache_write_tokens"),
        "reasoning_tokens": Sum("reasoning_tokens"),
        "cost_usd": Sum("cost_usd"),
        "billed_usd": Sum("billed_usd"),
        "tcu": Sum("tcu"),
        "latency_ms_sum": Sum("latency_ms"),
    }


def _latency_bucket() -> Cast:
    return Cast(Floor(Ln(Greatest(F("latency_ms"), Value(1))) * Value(float(DIGEST_STEPS))), IntegerField())


def empty_sums() -> dict[str, Any]:
    return {**dict.fromkeys(_SUMS, 0), "cost_usd": _ZERO, "billed_usd": _ZERO, "digest": {}}


Digest = Mapping[str, list[int]]  # bucket number → [calls, their summed latency in ms]


def add_sums(into: dict[str, Any], row: Mapping[str, Any], digest: Digest) -> None:
    """Add a row's sums and a latency digest into `into` (an `empty_sums()`)."""
    for name in _SUMS:
        into[name] += int(row.get(name) or 0)
    into["cost_usd"] += row.get("cost_usd") or _ZERO
    into["billed_usd"] += row.get("billed_usd") or _ZERO
    merged = into["digest"]
    for bucket, (n, ms) in digest.items():
        was = merged.get(bucket, (0, 0))
        merged[bucket] = [was[0] + n, was[1] + ms]


def event_sums(events: QuerySet[UsageEvent], fields: tuple[str, ...], **exprs: Any) -> list[dict[str, Any]]:
    """The events summed per `fields` (and named expressions), each row with its latency digest."""
    merged: dict[tuple, dict[str, Any]] = {}
    names = (*fields, *exprs)
    rows = (
        events.order_by().values(*fields, **exprs, bucket=_latency_bucket()).annotate(**_event_aggregates())
    )
    with _hash_aggregate():
        rows = list(rows)
    for r in rows:
        key = tuple(r[n] for n in names)
        into = merged.get(key)
        if into is None:
            into = merged[key] = {**dict(zip(names, key, strict=True)), **empty_sums()}
        add_sums(into, r, {str(r["bucket"]): [r["requests"], int(r["latency_ms_sum"] or 0)]})
    return list(merged.values())


@contextmanager
def _hash_aggregate() -> Iterator[None]:
    """PostgreSQL plans the digest's GROUP BY as a sort of every event (it cannot tell the buckets are few) and
    JIT-compiles it; hashing is several times faster and the compile costs more than it saves at this size."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off; SET LOCAL jit = off")
        yield  # on an error the block rolls back, and the settings with it
        cursor.execute("SET LOCAL enable_sort TO DEFAULT; SET LOCAL jit TO DEFAULT")


def latest_event_id() -> int:
    """The highest event id visible now (one index read)."""
    return UsageEvent.objects.unscoped().aggregate(m=Max("id"))["m"] or 0


def seal_event_id() -> int | None:
    """An event id no insert still to commit can be below: every event up to it is visible now and final.

    PostgreSQL hands an id out when a row is inserted, not when it commits, so a read can see id 101 while the
    transaction holding 100 is still open. A SHARE lock on the table waits for the transactions writing events
    (an INSERT holds ROW EXCLUSIVE until its transaction ends) and holds new ones off while the highest id is
    read, a moment. None when the lock is not had within 50 ms, or inside a transaction (it could not be let go
    before that ends); the caller then treats every event as unsealed. SQLite writes one transaction at a time:
    what is visible there is final."""
    if connection.vendor != "postgresql":
        return latest_event_id()
    if connection.in_atomic_block:
        return None
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '50ms'")
            cursor.execute(f"LOCK TABLE {UsageEvent._meta.db_table} IN SHARE MODE")
            return latest_event_id()
    except OperationalError:  # the lock was not had in time (a long write, a vacuum): nothing is sealed
        return None


def p95_from(digest: Digest) -> int:
    """The 95th percentile latency (ms, nearest rank) from a digest: the mean of the bucket it falls in."""
    total = sum(n for n, _ in digest.values())
    if not total:
        return 0
    rank = math.ceil(0.95 * total)
    running = 0
    for bucket in sorted(digest, key=int):
        n, ms = digest[bucket]
        running += n
        if running >= rank:
            break
    return round(ms / n) if n else 0


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
            cache_read_tokens=r["cache_read_tokens"] or 0,
            cache_write_tokens=r["cache_write_tokens"] or 0,
            reasoning_tokens=r["reasoning_tokens"] or 0,
            cost_usd=r["cost_usd"] or _ZERO,
            billed_usd=r["billed_usd"] or _ZERO,
            tcu=r["tcu"] or 0,
            latency_ms_sum=r["latency_ms_sum"] or 0,
            latency_digest=r["digest"],
            **key,
        )
        for r in rows
    ]


def rollup_hour(*, tenant_id: int, hour: datetime, upto_id: int | None = None) -> int:
    """Recompute one tenant-hour from its events with an id up to `upto_id` (default: the tenant's watermark, or
    every event before the tenant's first rollup); idempotent: replaces the hour's rows."""
    if upto_id is None:
        upto_id = UsageWatermark.objects.for_tenant(tenant_id).values_list("event_id", flat=True).first()
    events = UsageEvent.objects.for_tenant(tenant_id).filter(created_at__gte=hour, created_at__lt=hour + HOUR)
    rows = event_sums(events if upto_id is None else events.filter(id__lte=upto_id), _KEY)
    objs = _rollup_rows(UsageHourly, tenant_id, {"hour": hour}, rows)
    UsageHourly.objects.for_tenant(tenant_id).filter(hour=hour).delete()
    UsageHourly.objects.for_tenant(tenant_id).bulk_create(objs)
    return len(objs)


def _rollup(*, tenant_id: int, hours: set[datetime], days: set[date], mark: UsageWatermark) -> int:
    """Recompute a tenant's hours (events up to the mark's id), then its days that are whole before the mark,
    and save the mark, all in one transaction: a read sees the rollups and their watermark change together."""
    written = 0
    with transaction.atomic():
        for hour in sorted(hours):
            written += rollup_hour(tenant_id=tenant_id, hour=hour, upto_id=mark.event_id)
        for day in sorted(days | {h.date() for h in hours}):
            if _day_start(day) + DAY <= mark.through:  # only whole days go to the daily table
                written += _day_from_hours(tenant_id=tenant_id, day=day)
        mark.version += 1
        mark.save()
    return written


def rollup_day(*, tenant_id: int, day: date) -> int:
    """Recompute one tenant-day from its events up to the tenant's watermark: its hours, then the day (idempotent;
    reconciliation repairs drift with it). Nothing before the first rollup of the tenant."""
    mark = UsageWatermark.objects.for_tenant(tenant_id).first()
    if mark is None:
        return 0
    start = _day_start(day)
    hours = {start + HOUR * i for i in range(24) if start + HOUR * i < mark.through}
    return _rollup(tenant_id=tenant_id, hours=hours, days={day}, mark=mark)


def _day_from_hours(*, tenant_id: int, day: date) -> int:
    """Recompute one tenant-day from its hourly rows (idempotent: replaces the day's rows)."""
    start = _day_start(day)
    merged: dict[tuple, dict[str, Any]] = {}
    for h in UsageHourly.objects.for_tenant(tenant_id).filter(hour__gte=start, hour__lt=start + DAY):
        key = (h.agent_id, h.model, h.provider, h.mode, h.request_type)
        row = merged.setdefault(key, {**dict(zip(_KEY, key, strict=True)), **empty_sums()})
        add_sums(
            row, {name: getattr(h, name) for name in (*_SUMS, "cost_usd", "billed_usd")}, h.latency_digest
        )
    objs = _rollup_rows(UsageDaily, tenant_id, {"day": day}, merged.values())
    UsageDaily.objects.for_tenant(tenant_id).filter(day=day).delete()
    UsageDaily.objects.for_tenant(tenant_id).bulk_create(objs)
    return len(objs)


def rollup_pending(
    *, now: datetime | None = None, redo_hours: int = 2, rolled: set[int] | None = None
) -> int:
    """Roll up, per tenant, every whole hour with events the rollups do not hold yet: new hours, and older hours
    that got events since (a late drain, a backlog), found by the event id past the tenant's watermark; then the
    days these complete. The last `redo_hours` before the previous run's end are redone as well, for an event
    whose insert committed after a later one's. Safe to run any number of times. `rolled` gets the tenants whose
    rollup rows were written."""
    now = now or timezone.now()
    current_hour = _floor_hour(now)
    top = seal_event_id()
    if top is None:  # not sealed: the redone hours take in an insert that commits after a later one
        top = latest_event_id()
    if not top:
        return 0
    marks = {m.tenant_id: m for m in UsageWatermark.objects.unscoped()}
    oldest_id = min((m.event_id for m in marks.values()), default=0)
    oldest_end = min((m.through for m in marks.values()), default=None)
    pending = Q(id__gt=oldest_id)
    if oldest_end is not None:
        pending |= Q(created_at__gte=oldest_end - HOUR * redo_hours)
    found = (
        UsageEvent.objects.unscoped()
        .filter(pending, id__lte=top, created_at__lt=current_hour)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("tenant_id", "hour")
        .annotate(last=Max("id"))
    )
    hours: dict[int, set[datetime]] = defaultdict(set)
    for row in found:
        mark = marks.get(row["tenant_id"])
        if mark is None or row["last"] > mark.event_id or row["hour"] >= mark.through - HOUR * redo_hours:
            hours[row["tenant_id"]].add(row["hour"])
    written = 0
    idle = []
    for tenant_id in set(hours) | set(marks):
        mark = marks.get(tenant_id)
        days: set[date] = set()
        if mark is not None:  # days that end between the tenant's last run and this one are whole now
            day = mark.through.astimezone(UTC).date()
            while _day_start(day) + DAY <= current_hour:
                if _day_start(day) + DAY > mark.through:
                    days.add(day)
                day += DAY
        if mark is not None and not hours[tenant_id] and not days:
            idle.append(mark.pk)  # nothing of this tenant's changes: only its watermark moves on
            continue
        mark = mark or UsageWatermark(tenant_id=tenant_id)
        mark.event_id, mark.through = top, current_hour
        written += _rollup(tenant_id=tenant_id, hours=hours[tenant_id], days=days, mark=mark)
        if rolled is not None:  # the tenants whose figures moved to new rollup rows (a new watermark version)
            rolled.add(tenant_id)
    # Same rollups, same figures: the version stays, so the reads' folded rollups stay cached.
    UsageWatermark.objects.unscoped().filter(pk__in=idle).update(event_id=top, through=current_hour)
    return written


def vacuum_analyze() -> None:
    """Fresh planner statistics after a bulk load (the data generator calls it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE llm_usageevent; ANALYZE llm_usagedaily;")
