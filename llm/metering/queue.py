"""The usage queue: events appended to a Redis stream by settlement, drained into PostgreSQL by a consumer group,
refused ones dead-lettered; each stored batch announced (usage_recorded)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)
from django.db.models import Model, Q, Sum

from llm.limits import budget
from llm.metering.pricing import _MONEY_FIELDS, Usage, clean_event
from llm.models import UsageEvent
from llm.policy import usage_recorded
from tenants.models import Agent, ApiKey, Tenant, User

log = logging.getLogger(__name__)


_GROUP = "drainers"


_DRAIN_BATCH = 500


_DEAD_MAX = 100_000  # the dead-letter stream keeps at most this many (oldest dropped, each one logged)


def event_from(data: object) -> UsageEvent:
    """A queued event as a row; ValueError when it cannot be one (it is then dead-lettered)."""
    if not isinstance(data, dict) or not isinstance(data.get("tenant_id"), int) or not data.get("request_id"):
        raise ValueError("not a usage event (tenant_id and request_id are required)")
    fields = clean_event(data)
    created = datetime.fromisoformat(fields["created_at"])
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    fields["created_at"] = created
    for name in _MONEY_FIELDS:
        fields[name] = Decimal(fields[name])
    return UsageEvent(**fields)


def record_now(usage: Usage) -> UsageEvent:
    """Write one event synchronously (Celery tasks, test connections, the embedded default)."""
    event = event_from(orjson.loads(usage.to_json()))
    with transaction.atomic():
        UsageEvent.objects.for_tenant(event.tenant_id).bulk_create([event], ignore_conflicts=True)
    _after_insert([event])
    return event


def record_test_call(
    *,
    tenant_id: int,
    user_id: int | None,
    provider: str,
    model: str,
    mode: str,
    latency_ms: int,
    ok: bool,
    error_kind: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    request_id: str | None = None,
) -> UsageEvent:
    usage = Usage(
        request_id=request_id or f"test-{uuid.uuid4().hex}",
        tenant_id=tenant_id,
        user_id=user_id,
        request_type="test",
        provider=provider,
        model=model,
        mode=mode,
        latency_ms=latency_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        status="ok" if ok else "error",
        error_kind=error_kind,
        http_status=200 if ok else 502,
    )
    return record_now(usage)


def _with_live_refs(events: list[UsageEvent]) -> list[UsageEvent]:
    """Keep a queued event insertable after what it names was deleted (an agent, a key, a member, a tenant).

    Without this, one event of a deleted agent would fail its batch's foreign keys on every drain and hold the
    whole queue back. Gone agents, keys and users are set to NULL (the rows' own SET_NULL rule); events of a
    deleted tenant are dropped with a warning, as the tenant's usage went with it.
    """

    def live(model: type[Model], ids: set[int | None]) -> set[int | None]:
        ids.discard(None)
        if not ids:
            return set()
        return set(model._base_manager.filter(pk__in=ids).values_list("pk", flat=True))

    tenants = live(Tenant, {e.tenant_id for e in events})
    agents = live(Agent, {e.agent_id for e in events})
    keys = live(ApiKey, {e.api_key_id for e in events})
    users = live(User, {e.user_id for e in events})
    kept = []
    for e in events:
        if e.tenant_id not in tenants:
            log.warning(
                "usage event dropped: its tenant was deleted",
                extra={"request_id": e.request_id, "tenant_id": e.tenant_id},
            )
            continue
        if e.agent_id not in agents:
            e.agent_id = None
        if e.api_key_id not in keys:
            e.api_key_id = None
        if e.user_id not in users:
            e.user_id = None
        kept.append(e)
    return kept


def _ensure_group(client: Any) -> None:
    try:
        client.xgroup_create(budget.EVENTS_KEY, _GROUP, id="0", mkstream=True)
    except Exception as exc:  # BUSYGROUP: it exists already (redis and fakeredis word it alike)
        if "BUSYGROUP" not in str(exc):
            raise


# Older versions queued to a list; move what is left there into the stream, atomically, a batch at a time.
_MOVE_LEGACY = """
local moved = 0
for i = 1, tonumber(ARGV[1]) do
  local raw = redis.call('LPOP', KEYS[1])
  if not raw then break end
  redis.call('XADD', KEYS[2], '*', 'e', raw); moved = moved + 1
end
return moved
"""


def _consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _next_batch(client: Any, consumer: str) -> list[tuple[bytes, bytes]]:
    try:
        return _read_batch(client, consumer)
    except Exception as exc:
        if "NOGROUP" not in str(exc):
            raise
        _ensure_group(client)  # Redis lost the stream (a restart without persistence): start it again
        return _read_batch(client, consumer)


def _read_batch(client: Any, consumer: str) -> list[tuple[bytes, bytes]]:
    """Entries to insert: first what a stalled or dead drainer left unacknowledged for too long (taken over),
    then our own unacknowledged ones (a batch that failed), then new ones."""
    _, claimed, *_ = client.xautoclaim(
        budget.EVENTS_KEY,
        _GROUP,
        consumer,
        min_idle_time=settings.USAGE_CLAIM_IDLE_MS,
        start_id="0-0",
        count=_DRAIN_BATCH,
    )
    entries = [(eid, fields.get(b"e", b"")) for eid, fields in claimed if fields]
    if entries:
        return entries
    for start in ("0", ">"):
        reply = client.xreadgroup(_GROUP, consumer, {budget.EVENTS_KEY: start}, count=_DRAIN_BATCH)
        entries = [(eid, (fields or {}).get(b"e", b"")) for _, items in reply or () for eid, fields in items]
        if entries:
            return entries
    return []


_TRANSIENT = (OperationalError, InterfaceError)


def _insert(rows: list[tuple[bytes, UsageEvent]]) -> tuple[list[UsageEvent], list[tuple[bytes, str]]]:
    """Insert a batch; when the database refuses it, insert one by one and return the refused with a reason.
    A database that is down (OperationalError) is not the events' fault: it propagates and they stay queued."""
    events = _with_live_refs([e for _, e in rows])
    try:
        with transaction.atomic():
            UsageEvent.objects.unscoped().bulk_create(events, ignore_conflicts=True)
        return events, []
    except _TRANSIENT:
        raise
    except DatabaseError:
        pass
    inserted: list[UsageEvent] = []
    refused: list[tuple[bytes, str]] = []
    for eid, event in rows:
        kept = _with_live_refs([event])
        try:
            with transaction.atomic():
                UsageEvent.objects.unscoped().bulk_create(kept, ignore_conflicts=True)
        except _TRANSIENT:
            raise
        except DatabaseError as exc:
            refused.append(
                (eid, f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
            )
        else:
            inserted += kept
    return inserted, refused


def drain(max_batches: int = 1000) -> int:
    """Move queued events from the stream into PostgreSQL; returns how many entries were settled.

    Several drainers may run at once (each web process, Celery): each reads its own entries through the consumer
    group and acknowledges only what it handled; entries of a drainer that stalled or died are taken over after
    USAGE_CLAIM_IDLE_MS. An entry is acknowledged only after its row committed (or it was dead-lettered), and rows
    are unique by request_id, so a takeover can insert twice without doubling anything, and nothing is lost.
    """
    client = budget.backend().sync_client()
    _ensure_group(client)
    if client.exists(budget.LEGACY_EVENTS_KEY):
        client.eval(_MOVE_LEGACY, 2, budget.LEGACY_EVENTS_KEY, budget.EVENTS_KEY, 10_000)
    consumer = _consumer()
    moved = 0
    try:
        for _ in range(max_batches):
            entries = _next_batch(client, consumer)
            if not entries:
                break
            rows: list[tuple[bytes, UsageEvent]] = []
            refused: list[tuple[bytes, str]] = []
            raws = dict(entries)
            for eid, raw in entries:
                try:
                    rows.append((eid, event_from(orjson.loads(raw))))
                except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                    refused.append((eid, f"undecodable event: {str(exc)[:200]}"))
            inserted, refused_db = _insert(rows) if rows else ([], [])
            refused += refused_db
            _dead_letter(client, [(raws[eid], reason) for eid, reason in refused])
            ids = [eid for eid, _ in entries]
            pipe = client.pipeline(transaction=True)
            pipe.xack(budget.EVENTS_KEY, _GROUP, *ids)
            pipe.xdel(budget.EVENTS_KEY, *ids)
            pipe.execute()
            moved += len(entries)
            _after_insert(inserted)
            if len(entries) < _DRAIN_BATCH:
                break
    finally:
        _forget_idle_consumers(client)
    return moved


class DrainThread(threading.Thread):
    """Drains every `interval` seconds until stopped, then once more: the Celery worker's drainer (`llm.tasks`,
    `USAGE_DRAINERS`). Its database connection is kept between drains, as a request's is (CONN_MAX_AGE, health
    checks), and a failed drain leaves the events queued for the next one."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="usage-drain", daemon=True)
        self.interval = interval
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopping.wait(self.interval):
                self._drain_once()
            self._drain_once()
        finally:
            connections.close_all()

    def _drain_once(self) -> None:
        close_old_connections()
        try:
            drain()
        except Exception:
            log.exception("usage drain failed; events stay queued")

    def stop(self, timeout: float = 20.0) -> None:
        self._stopping.set()
        self.join(timeout)


_housekeeping = {"next": 0.0}


def _forget_idle_consumers(client: Any) -> None:
    """Drop consumers of processes long gone that hold nothing (each process drains under its own name)."""
    now = time.monotonic()
    if now < _housekeeping["next"]:
        return
    _housekeeping["next"] = now + 600
    try:
        for info in client.xinfo_consumers(budget.EVENTS_KEY, _GROUP):
            if int(info.get("pending", 0)) == 0 and int(info.get("idle", 0)) > 3_600_000:
                client.xgroup_delconsumer(budget.EVENTS_KEY, _GROUP, info["name"])
    except (redis.RedisError, OSError, ValueError, KeyError):  # housekeeping only
        log.debug("drain consumer housekeeping skipped")


def _dead_letter(client: Any, items: list[tuple[bytes, str]]) -> None:
    """Keep refused events aside with the reason (visible in admin and /metrics), out of everyone's way."""
    if not items:
        return
    pipe = client.pipeline(transaction=True)
    for raw, reason in items:
        log.error("usage event dead-lettered", extra={"reason": reason})
        pipe.xadd(
            budget.DEAD_KEY,
            {"e": raw, "reason": reason, "at": datetime.now(UTC).isoformat()},
            maxlen=_DEAD_MAX,
            approximate=False,
        )
    pipe.execute()


def dead_letters(limit: int = 200) -> list[dict[str, str]]:
    """The newest dead-lettered events, for the admin."""
    client = budget.backend().sync_client()
    out = []
    for eid, fields in client.xrevrange(budget.DEAD_KEY, count=limit):
        out.append(
            {
                "id": eid.decode(),
                "reason": fields.get(b"reason", b"").decode("utf-8", "replace"),
                "at": fields.get(b"at", b"").decode(),
                "event": fields.get(b"e", b"").decode("utf-8", "replace"),
            }
        )
    return out


def dead_letter_count() -> int:
    return int(budget.backend().sync_client().xlen(budget.DEAD_KEY))


def requeue_dead_letters(ids: list[str] | None = None) -> int:
    """Put dead-lettered events back on the queue (after the cause was fixed); returns how many."""
    client = budget.backend().sync_client()
    entries = (
        client.xrange(budget.DEAD_KEY)
        if ids is None
        else [e for i in ids for e in client.xrange(budget.DEAD_KEY, min=i, max=i)]
    )
    for eid, fields in entries:
        pipe = client.pipeline(transaction=True)
        pipe.xadd(budget.EVENTS_KEY, {"e": fields.get(b"e", b"")})
        pipe.xdel(budget.DEAD_KEY, eid)
        pipe.execute()
    return len(entries)


def discard_dead_letters(ids: list[str]) -> int:
    client = budget.backend().sync_client()
    return int(client.xdel(budget.DEAD_KEY, *ids)) if ids else 0


def pending_count() -> int:
    """Events queued and not yet in PostgreSQL (new and unacknowledged alike)."""
    client = budget.backend().sync_client()
    return int(client.xlen(budget.EVENTS_KEY)) + int(client.llen(budget.LEGACY_EVENTS_KEY))


def flush(timeout: float = 20.0) -> int:
    """Drain everything now, waiting for events another drainer holds (commands and tasks want fresh usage).
    Entries a stalled drainer holds are taken over once they are USAGE_CLAIM_IDLE_MS old."""
    moved = drain()
    deadline = time.monotonic() + timeout
    while pending_count() and time.monotonic() < deadline:
        time.sleep(0.05)
        moved += drain()
    return moved


def _after_insert(events: list[UsageEvent]) -> None:
    """Announce the stored usage, per tenant of the batch, with its period totals (billing sends cap alerts)."""
    by_tenant: dict[int, tuple[int, int, int]] = {}
    for e in events:
        tcu, platform_tcu, tokens = by_tenant.get(e.tenant_id, (0, 0, 0))
        platform = e.mode == "platform"
        by_tenant[e.tenant_id] = (
            tcu + e.tcu,
            platform_tcu + (e.tcu if platform else 0),
            tokens + ((e.input_tokens + e.output_tokens) if platform else 0),
        )
    period = budget.period_of()
    start, end = budget.period_bounds(period)
    for tenant_id, (batch_tcu, batch_platform_tcu, batch_tokens) in by_tenant.items():
        totals = (
            UsageEvent.objects.for_tenant(tenant_id)
            .filter(created_at__gte=start, created_at__lt=end)
            .aggregate(
                all_tcu=Sum("tcu"),
                platform_tcu=Sum("tcu", filter=Q(mode="platform")),
                tokens=Sum("input_tokens", filter=Q(mode="platform")),
                out=Sum("output_tokens", filter=Q(mode="platform")),
            )
        )
        tcu_after = int(totals["all_tcu"] or 0)
        platform_tcu_after = int(totals["platform_tcu"] or 0)
        tokens_after = int(totals["tokens"] or 0) + int(totals["out"] or 0)
        for receiver, result in usage_recorded.send_robust(
            sender=UsageEvent,
            tenant_id=tenant_id,
            tcu_before=tcu_after - batch_tcu,
            tcu_after=tcu_after,
            platform_tcu_before=platform_tcu_after - batch_platform_tcu,
            platform_tcu_after=platform_tcu_after,
            tokens_before=tokens_after - batch_tokens,
            tokens_after=tokens_after,
        ):
            if isinstance(result, Exception):  # the events are stored; an alert can be sent by the next batch
                log.error(
                    "usage_recorded receiver %s failed for tenant %s",
                    getattr(receiver, "__name__", receiver),
                    tenant_id,
                    exc_info=result,
                )
