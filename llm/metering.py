"""Metering: prices → cost, TCU and billed amount; usage events queued durably, then drained into PostgreSQL."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from . import budget
from .models import UsageEvent

log = logging.getLogger(__name__)
_MTOK = Decimal(1_000_000)
_DRAIN_LOCK = f"{budget.NS}:usage:drain-lock"
_DRAIN_LEASE_S = 15  # renewed per batch; a drainer killed mid-way blocks others for at most this long
_DRAIN_BATCH = 500
# Release or renew only the lease we hold: a drainer that outlived its lease must not free another's.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"


def tcu_of(cost_usd: Decimal) -> int:
    tcu_usd = Decimal(str(settings.TCU_USD))
    return int((cost_usd / tcu_usd).to_integral_value(rounding="ROUND_CEILING")) if cost_usd > 0 else 0


def estimate_tokens(text_len: int) -> int:
    """Rough token count from characters (≈4 characters a token), for reservations and cut streams."""
    return max(1, (text_len + 3) // 4)


def prompt_chars(body: dict) -> int:
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "text":
                    total += len(part.get("text") or "")
                else:
                    total += 1000  # an image or other part: count it generously
    inp = body.get("input")
    if isinstance(inp, str):
        total += len(inp)
    elif isinstance(inp, list):
        total += sum(len(x) if isinstance(x, str) else 4 * len(x) for x in inp)
    return total


def cost_of(input_tokens: int, output_tokens: int, in_price: Decimal | None, out_price: Decimal | None
            ) -> tuple[Decimal, Decimal]:
    return (
        (Decimal(input_tokens) * (in_price or 0) / _MTOK).quantize(Decimal("0.00000001")),
        (Decimal(output_tokens) * (out_price or 0) / _MTOK).quantize(Decimal("0.00000001")),
    )


@dataclass(slots=True)
class Usage:
    """What one call used and how it went; serialised onto the durable queue as JSON."""

    request_id: str
    tenant_id: int
    request_type: str = "chat"
    api_key_id: int | None = None
    agent_id: int | None = None
    user_id: int | None = None
    mode: str = ""
    provider: str = ""
    model: str = ""
    tier: str = ""
    route: str = ""
    variant: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    tokens_estimated: bool = False
    cost_input_usd: str = "0"
    cost_output_usd: str = "0"
    cost_usd: str = "0"
    billed_usd: str = "0"
    tcu: int = 0
    latency_ms: int = 0
    ttft_ms: int | None = None
    fallback_depth: int = 0
    cached: bool = False
    status: str = "ok"
    error_kind: str = ""
    http_status: int = 200
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def price(self, in_price: Decimal | None, out_price: Decimal | None, markup: Decimal | None) -> None:
        """Fill cost, TCU and billed amount from the catalog prices (zero for cached answers)."""
        if self.cached:
            return
        ci, co = cost_of(self.input_tokens, self.output_tokens, in_price, out_price)
        cost = ci + co
        self.cost_input_usd, self.cost_output_usd, self.cost_usd = str(ci), str(co), str(cost)
        self.tcu = tcu_of(cost)
        if self.mode == "platform":
            self.billed_usd = str((cost * (1 + (markup or 0))).quantize(Decimal("0.00000001")))

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


def _event_from(data: dict[str, Any]) -> UsageEvent:
    data = dict(data)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    for name in ("cost_input_usd", "cost_output_usd", "cost_usd", "billed_usd"):
        data[name] = Decimal(data[name])
    return UsageEvent(**data)


def record_now(usage: Usage) -> UsageEvent:
    """Write one event synchronously (Celery tasks, test connections, the embedded default)."""
    event = _event_from(asdict(usage))
    with transaction.atomic():
        UsageEvent.objects.unscoped().bulk_create([event], ignore_conflicts=True)
    _after_insert([event])
    return event


def record_test_call(*, tenant_id: int, user_id: int | None, provider: str, model: str, mode: str,
                     latency_ms: int, ok: bool, error_kind: str = "", input_tokens: int = 0,
                     output_tokens: int = 0, request_id: str | None = None) -> UsageEvent:
    usage = Usage(request_id=request_id or f"test-{uuid.uuid4().hex}", tenant_id=tenant_id, user_id=user_id,
                  request_type="test", provider=provider, model=model, mode=mode, latency_ms=latency_ms,
                  input_tokens=input_tokens, output_tokens=output_tokens,
                  status="ok" if ok else "error", error_kind=error_kind, http_status=200 if ok else 502)
    return record_now(usage)


def _with_live_refs(events: list[UsageEvent]) -> list[UsageEvent]:
    """Keep a queued event insertable after what it names was deleted (an agent, a key, a member, a tenant).

    Without this, one event of a deleted agent would fail its batch's foreign keys on every drain and hold the
    whole queue back. Gone agents, keys and users are set to NULL (the rows' own SET_NULL rule); events of a
    deleted tenant are dropped with a warning, as the tenant's usage went with it.
    """
    from tenants.models import Agent, ApiKey, Tenant, User

    def live(model: Any, ids: set[int | None]) -> set[int | None]:
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
            log.warning("usage event dropped: its tenant was deleted",
                        extra={"request_id": e.request_id, "tenant_id": e.tenant_id})
            continue
        if e.agent_id not in agents:
            e.agent_id = None
        if e.api_key_id not in keys:
            e.api_key_id = None
        if e.user_id not in users:
            e.user_id = None
        kept.append(e)
    return kept


def drain(max_batches: int = 1000) -> int:
    """Move queued events from Redis into PostgreSQL; idempotent (unique request_id), one drainer at a time."""
    b = budget.backend()
    moved = 0
    if isinstance(b, budget.MemoryBackend):
        with b.lock:
            pending, b.events = b.events, []
        if pending:
            events = _with_live_refs([_event_from(orjson.loads(raw)) for raw in pending])
            UsageEvent.objects.unscoped().bulk_create(events, ignore_conflicts=True)
            _after_insert(events)
        return len(pending)
    client = b.sync_client()
    token = uuid.uuid4().hex
    if not client.set(_DRAIN_LOCK, token, nx=True, ex=_DRAIN_LEASE_S):
        return 0
    try:
        for _ in range(max_batches):
            if not client.eval(_RENEW, 1, _DRAIN_LOCK, token, _DRAIN_LEASE_S):
                log.warning("usage drain lease lost; leaving the rest to the next drainer")
                break
            raws = client.lrange(budget.EVENTS_KEY, 0, _DRAIN_BATCH - 1)
            if not raws:
                break
            events = _with_live_refs([_event_from(orjson.loads(raw)) for raw in raws])
            try:
                with transaction.atomic():
                    UsageEvent.objects.unscoped().bulk_create(events, ignore_conflicts=True)
            except IntegrityError:  # a row referred to was deleted between the check and the insert
                events = _with_live_refs(events)
                with transaction.atomic():
                    UsageEvent.objects.unscoped().bulk_create(events, ignore_conflicts=True)
            # Only trimmed after the insert committed: a crash in between re-inserts, and conflicts are ignored.
            client.ltrim(budget.EVENTS_KEY, len(raws), -1)
            moved += len(raws)
            _after_insert(events)
            if len(raws) < _DRAIN_BATCH:
                break
    finally:
        client.eval(_RELEASE, 1, _DRAIN_LOCK, token)
    return moved


def pending_count() -> int:
    b = budget.backend()
    if isinstance(b, budget.MemoryBackend):
        return len(b.events)
    return int(b.sync_client().llen(budget.EVENTS_KEY))


def flush() -> int:
    """Drain everything now, waiting briefly for another drainer to finish (reads want fresh usage)."""
    moved = drain()
    deadline = time.monotonic() + _DRAIN_LEASE_S + 2  # outlasts the lease of a drainer that died holding it
    while pending_count() and time.monotonic() < deadline:
        time.sleep(0.05)
        moved += drain()
    return moved


def _after_insert(events: list[UsageEvent]) -> None:
    """Tell billing about threshold crossings, per tenant of the batch (pure arithmetic on its side)."""
    try:
        from billing.caps import after_usage
    except ImportError:
        return
    by_tenant: dict[int, tuple[int, int]] = {}
    for e in events:
        tcu, tokens = by_tenant.get(e.tenant_id, (0, 0))
        platform_tokens = (e.input_tokens + e.output_tokens) if e.mode == "platform" else 0
        by_tenant[e.tenant_id] = (tcu + e.tcu, tokens + platform_tokens)
    period = budget.period_of()
    start, end = budget.period_bounds(period)
    for tenant_id, (batch_tcu, batch_tokens) in by_tenant.items():
        totals = UsageEvent.objects.unscoped().filter(
            tenant_id=tenant_id, created_at__gte=start, created_at__lt=end
        ).aggregate(tcu=Sum("tcu"), tokens=Sum("input_tokens", filter=Q(mode="platform"))
                    , out=Sum("output_tokens", filter=Q(mode="platform")))
        tcu_after = int(totals["tcu"] or 0)
        tokens_after = int(totals["tokens"] or 0) + int(totals["out"] or 0)
        try:
            after_usage(tenant_id=tenant_id, tcu_before=tcu_after - batch_tcu, tcu_after=tcu_after,
                        tokens_before=tokens_after - batch_tokens, tokens_after=tokens_after)
        except Exception:
            log.exception("billing.after_usage failed for tenant %s", tenant_id)
