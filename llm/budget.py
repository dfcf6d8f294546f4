"""Atomic budget reservation, rate limits and concurrency in Redis: one round trip to admit a call, one to settle.

PostgreSQL stays the source of truth: a missing TCU counter is rebuilt from UsageEvent sums. Admission refuses
a call once `used + reserved >= cap`, so concurrent calls overshoot a cap by at most one call's cost. Settling
moves the reservation to `used` and pushes the UsageEvent onto a Redis list in the same script, so an event
is durable before the response completes; `llm.metering.drain` moves the list into PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

# Namespaced by the cache prefix so that test runs (and several deployments on one Redis) never mix.
NS = settings.CACHES["default"].get("KEY_PREFIX", "byok")
EVENTS_KEY = f"{NS}:usage:events"
COUNTER_TTL = 40 * 24 * 3600
RESERVED_TTL = 600  # a crashed process's reservations fade after this


def period_of(dt: datetime | None = None) -> str:
    dt = dt or datetime.now(UTC)
    return f"{dt.year:04d}-{dt.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    year, month = (int(p) for p in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True, slots=True)
class Scope:
    """A TCU budget: the tenant's hard cap, an API key's or an Agent's monthly limit."""

    kind: str  # "tenant" | "key" | "agent"
    id: int
    cap: int | None

    def used_key(self, period: str) -> str:
        return f"{NS}:tcu:{self.kind}:{self.id}:{period}"

    def reserved_key(self, period: str) -> str:
        return f"{NS}:tcu-resv:{self.kind}:{self.id}:{period}"


@dataclass(frozen=True, slots=True)
class RateLimit:
    name: str  # "tenant" | "key" | "monthly"
    id: int
    limit: int
    window: int  # seconds; 60 for per-minute, a month for the monthly request cap

    def key(self, now: float) -> str:
        return f"{NS}:rl:{self.name}:{self.id}:{int(now // self.window)}"


@dataclass(slots=True)
class Reservation:
    period: str
    scopes: tuple[Scope, ...]
    amount: int
    concurrency_key: str | None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: str  # "cap" | "rate" | "concurrency"
    scope: Scope | None = None
    used: int = 0
    retry_after: int = 0
    limit: int = 0


@dataclass(slots=True)
class Admission:
    reservation: Reservation | None = None
    refusal: Refusal | None = None
    open_circuits: set[str] = field(default_factory=set)


# KEYS: [used_1, resv_1, ..., used_n, resv_n, rl_1..rl_m, cc?, cb_1..cb_k]
# ARGV: now, n_scopes, m_rates, has_cc, k_cb, amount, then per scope cap (-1 = none), per rate limit+ttl, cc limit
_ADMIT = """
local n = tonumber(ARGV[2]); local m = tonumber(ARGV[3]); local has_cc = tonumber(ARGV[4])
local k = tonumber(ARGV[5]); local amount = tonumber(ARGV[6]); local a = 7
for i = 1, n do
  local cap = tonumber(ARGV[a]); a = a + 1
  local used = redis.call('GET', KEYS[2*i-1])
  if not used then return {-1, i, 0} end
  if cap >= 0 then
    local resv = tonumber(redis.call('GET', KEYS[2*i]) or '0')
    if tonumber(used) + resv >= cap then return {1, i, tonumber(used) + resv} end
  end
end
local base = 2*n
for j = 1, m do
  local limit = tonumber(ARGV[a + 2*(j-1)])
  local ttl = tonumber(ARGV[a + 2*(j-1) + 1])
  local count = tonumber(redis.call('GET', KEYS[base + j]) or '0')
  if count >= limit then
    local pttl = redis.call('PTTL', KEYS[base + j])
    if pttl < 0 then pttl = ttl * 1000 end
    return {2, j, math.ceil(pttl / 1000)}
  end
end
local ccidx = base + m + 1
local cclimit = tonumber(ARGV[a + 2*m])
if has_cc == 1 and cclimit >= 0 then
  local cur = tonumber(redis.call('GET', KEYS[ccidx]) or '0')
  if cur >= cclimit then return {3, 0, cur} end
end
for j = 1, m do
  local ttl = tonumber(ARGV[a + 2*(j-1) + 1])
  if redis.call('INCR', KEYS[base + j]) == 1 then redis.call('EXPIRE', KEYS[base + j], ttl) end
end
if has_cc == 1 then
  redis.call('INCR', KEYS[ccidx]); redis.call('EXPIRE', KEYS[ccidx], 600)
end
for i = 1, n do
  redis.call('INCRBY', KEYS[2*i], amount); redis.call('EXPIRE', KEYS[2*i], RESERVED_TTL)
end
local open = {}
local cbstart = base + m + has_cc
for c = 1, k do
  if redis.call('EXISTS', KEYS[cbstart + c]) == 1 then table.insert(open, c) end
end
return {0, 0, 0, open}
""".replace("RESERVED_TTL", str(RESERVED_TTL))

# KEYS: [used_1, resv_1, ..., cc?, events]; ARGV: n, has_cc, reserved, actual, event_json ('' = none)
_SETTLE = """
local n = tonumber(ARGV[1]); local has_cc = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3]); local actual = tonumber(ARGV[4])
for i = 1, n do
  local r = redis.call('DECRBY', KEYS[2*i], reserved)
  if r < 0 then redis.call('SET', KEYS[2*i], 0) end
  if redis.call('EXISTS', KEYS[2*i-1]) == 1 and actual ~= 0 then redis.call('INCRBY', KEYS[2*i-1], actual) end
end
if has_cc == 1 then
  local c = redis.call('DECR', KEYS[2*n+1]); if c < 0 then redis.call('SET', KEYS[2*n+1], 0) end
end
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[#KEYS], ARGV[5]) end
return 1
"""


def _rebuild_used(scope: Scope, period: str) -> int:
    """The period's settled TCU for a scope, from PostgreSQL (plus events still queued in Redis)."""
    from django.db.models import Sum

    from .models import UsageEvent

    start, end = period_bounds(period)
    qs = UsageEvent.objects.unscoped().filter(created_at__gte=start, created_at__lt=end)
    qs = qs.filter(**{"tenant_id" if scope.kind == "tenant" else f"{'api_key' if scope.kind == 'key' else 'agent'}_id": scope.id})
    return int(qs.aggregate(total=Sum("tcu"))["total"] or 0)


class _Backend:
    def admit(self, *, scopes, rates, concurrency, amount, circuits, now) -> Admission:  # pragma: no cover
        raise NotImplementedError

    def settle(self, reservation: Reservation, actual: int, event: bytes | None) -> None:  # pragma: no cover
        raise NotImplementedError


class RedisBackend(_Backend):
    """The production backend; the async variants are what the gateway awaits."""

    def __init__(self, url: str):
        self.url = url
        self._sync = None
        self._async: dict[Any, Any] = {}
        self._lock = threading.Lock()

    # --- clients -------------------------------------------------------------------------------
    def sync_client(self):
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url)
            self._sync_scripts = (self._sync.register_script(_ADMIT), self._sync.register_script(_SETTLE))
        return self._sync

    def async_client(self):
        import asyncio

        import redis.asyncio as aredis

        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is None:
            client = aredis.Redis.from_url(self.url, max_connections=256)
            # EVALSHA with the script's digest; redis-py loads the script once when Redis does not know it.
            entry = (client, client.register_script(_ADMIT), client.register_script(_SETTLE))
            self._async = {lp: e for lp, e in self._async.items() if not lp.is_closed()}
            self._async[loop] = entry
        return entry[0]

    def _async_scripts(self):
        import asyncio

        self.async_client()
        return self._async[asyncio.get_running_loop()][1:]

    # --- argument building ------------------------------------------------------------------------
    @staticmethod
    def _admit_args(period, scopes, rates, concurrency, amount, circuits, now):
        keys: list[str] = []
        for s in scopes:
            keys += [s.used_key(period), s.reserved_key(period)]
        keys += [r.key(now) for r in rates]
        has_cc = concurrency is not None
        if has_cc:
            keys.append(concurrency[0])
        keys += [f"{NS}:cb:open:{c}" for c in circuits]
        args: list[Any] = [now, len(scopes), len(rates), int(has_cc), len(circuits), amount]
        args += [s.cap if s.cap is not None else -1 for s in scopes]
        for r in rates:
            args += [r.limit, r.window]
        args.append(concurrency[1] if has_cc and concurrency[1] is not None else -1)
        return keys, args

    @staticmethod
    def _interpret(result, period, scopes, rates, concurrency, amount, circuits) -> Admission | int:
        code = int(result[0])
        if code == -1:
            return int(result[1]) - 1
        if code == 1:
            s = scopes[int(result[1]) - 1]
            return Admission(refusal=Refusal("cap", scope=s, used=int(result[2]), limit=s.cap or 0))
        if code == 2:
            r = rates[int(result[1]) - 1]
            return Admission(refusal=Refusal("rate", retry_after=max(1, int(result[2])), limit=r.limit,
                                             scope=Scope(r.name, r.id, r.limit)))
        if code == 3:
            return Admission(refusal=Refusal("concurrency", retry_after=1, limit=concurrency[1]))
        open_idx = result[3] if len(result) > 3 else []
        return Admission(
            reservation=Reservation(period, tuple(scopes), amount, concurrency[0] if concurrency else None),
            open_circuits={circuits[int(i) - 1] for i in open_idx},
        )

    def _seed(self, scope: Scope, period: str) -> None:
        self.sync_client().set(scope.used_key(period), _rebuild_used(scope, period), nx=True, ex=COUNTER_TTL)

    def admit(self, *, scopes, rates, concurrency, amount, circuits, now) -> Admission:
        period = period_of(datetime.fromtimestamp(now, UTC))
        keys, args = self._admit_args(period, scopes, rates, concurrency, amount, circuits, now)
        self.sync_client()
        admit_script = self._sync_scripts[0]
        for _ in range(len(scopes) + 1):
            outcome = self._interpret(admit_script(keys=keys, args=args),
                                      period, scopes, rates, concurrency, amount, circuits)
            if isinstance(outcome, Admission):
                return outcome
            self._seed(scopes[outcome], period)
        raise RuntimeError("TCU counters could not be seeded")

    async def aadmit(self, *, scopes, rates, concurrency, amount, circuits, now) -> Admission:
        from asgiref.sync import sync_to_async

        period = period_of(datetime.fromtimestamp(now, UTC))
        keys, args = self._admit_args(period, scopes, rates, concurrency, amount, circuits, now)
        admit_script = self._async_scripts()[0]
        for _ in range(len(scopes) + 1):
            outcome = self._interpret(await admit_script(keys=keys, args=args),
                                      period, scopes, rates, concurrency, amount, circuits)
            if isinstance(outcome, Admission):
                return outcome
            await sync_to_async(self._seed)(scopes[outcome], period)
        raise RuntimeError("TCU counters could not be seeded")

    @staticmethod
    def _settle_args(reservation: Reservation, actual: int, event: bytes | None):
        keys: list[str] = []
        for s in reservation.scopes:
            keys += [s.used_key(reservation.period), s.reserved_key(reservation.period)]
        has_cc = reservation.concurrency_key is not None
        if reservation.concurrency_key is not None:
            keys.append(reservation.concurrency_key)
        keys.append(EVENTS_KEY)
        args = [len(reservation.scopes), int(has_cc), reservation.amount, actual, event or b""]
        return keys, args

    def settle(self, reservation: Reservation, actual: int, event: bytes | None) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        keys, args = self._settle_args(reservation, actual, event)
        self.sync_client()
        self._sync_scripts[1](keys=keys, args=args)

    async def asettle(self, reservation: Reservation, actual: int, event: bytes | None) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        keys, args = self._settle_args(reservation, actual, event)
        await self._async_scripts()[1](keys=keys, args=args)

    def used(self, scope: Scope, period: str) -> int:
        client = self.sync_client()
        value = client.get(scope.used_key(period))
        if value is None:
            self._seed(scope, period)
            value = client.get(scope.used_key(period))
        return int(value or 0)

    def reset_scope(self, scope: Scope, period: str) -> None:
        self.sync_client().delete(scope.used_key(period), scope.reserved_key(period))


class MemoryBackend(_Backend):
    """Single-process stand-in for the embedded default (no Redis); same semantics, a lock instead of Lua."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, int] = {}
        self.expiry: dict[str, float] = {}
        self.events: list[bytes] = []

    def _get(self, key: str, now: float) -> int | None:
        if key in self.expiry and self.expiry[key] <= now:
            self.values.pop(key, None)
            self.expiry.pop(key, None)
        return self.values.get(key)

    def admit(self, *, scopes, rates, concurrency, amount, circuits, now) -> Admission:
        period = period_of(datetime.fromtimestamp(now, UTC))
        for s in scopes:
            if self._get(s.used_key(period), now) is None:
                used = _rebuild_used(s, period)
                with self.lock:
                    self.values.setdefault(s.used_key(period), used)
        with self.lock:
            for s in scopes:
                total = self.values[s.used_key(period)] + (self._get(s.reserved_key(period), now) or 0)
                if s.cap is not None and total >= s.cap:
                    return Admission(refusal=Refusal("cap", scope=s, used=total, limit=s.cap))
            for r in rates:
                if (self._get(r.key(now), now) or 0) >= r.limit:
                    retry = int(r.window - now % r.window) + 1
                    return Admission(refusal=Refusal("rate", retry_after=retry, limit=r.limit,
                                                     scope=Scope(r.name, r.id, r.limit)))
            if concurrency is not None and concurrency[1] is not None \
                    and (self._get(concurrency[0], now) or 0) >= concurrency[1]:
                return Admission(refusal=Refusal("concurrency", retry_after=1, limit=concurrency[1]))
            for r in rates:
                k = r.key(now)
                self.values[k] = (self._get(k, now) or 0) + 1
                self.expiry.setdefault(k, now + r.window)
            if concurrency is not None:
                self.values[concurrency[0]] = (self._get(concurrency[0], now) or 0) + 1
            for s in scopes:
                k = s.reserved_key(period)
                self.values[k] = (self._get(k, now) or 0) + amount
            open_c = {c for c in circuits if (self._get(f"{NS}:cb:open:{c}", now) or 0) > 0}
        return Admission(reservation=Reservation(period, tuple(scopes), amount,
                                                 concurrency[0] if concurrency else None), open_circuits=open_c)

    async def aadmit(self, **kwargs) -> Admission:
        return self.admit(**kwargs)

    def settle(self, reservation: Reservation, actual: int, event: bytes | None) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        with self.lock:
            for s in reservation.scopes:
                rk = s.reserved_key(reservation.period)
                self.values[rk] = max(0, self.values.get(rk, 0) - reservation.amount)
                uk = s.used_key(reservation.period)
                if uk in self.values:
                    self.values[uk] += actual
            if reservation.concurrency_key:
                ck = reservation.concurrency_key
                self.values[ck] = max(0, self.values.get(ck, 0) - 1)
            if event:
                self.events.append(event)

    async def asettle(self, reservation: Reservation, actual: int, event: bytes | None) -> None:
        self.settle(reservation, actual, event)

    def used(self, scope: Scope, period: str) -> int:
        key = scope.used_key(period)
        if key not in self.values:
            self.values[key] = _rebuild_used(scope, period)
        return self.values[key]

    def reset_scope(self, scope: Scope, period: str) -> None:
        with self.lock:
            self.values.pop(scope.used_key(period), None)
            self.values.pop(scope.reserved_key(period), None)


_backend: _Backend | None = None
_backend_lock = threading.Lock()


def backend() -> Any:
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                _backend = RedisBackend(settings.REDIS_URL) if settings.REDIS_URL else MemoryBackend()
    return _backend


def reset_backend() -> None:
    """Forget clients (tests switch settings; forked workers must not share connections)."""
    global _backend
    _backend = None


def used_tcu(*, tenant_id: int, period: str | None = None) -> int:
    """TCU settled so far in the period (UTC month) for a tenant."""
    return backend().used(Scope("tenant", tenant_id, None), period or period_of())


def invalidate_limits(tenant_id: int) -> None:
    """Called by billing when a plan, subscription state or cap changes; the gateway re-reads limits at once."""
    from . import gateway_cache

    gateway_cache.forget_limits(tenant_id)


def reserve(*, scopes: list[Scope], rates: list[RateLimit] | None = None,
            concurrency: tuple[str, int | None] | None = None, amount: int,
            circuits: list[str] | None = None) -> Admission:
    return backend().admit(scopes=scopes, rates=rates or [], concurrency=concurrency, amount=amount,
                           circuits=circuits or [], now=time.time())


def settle(reservation: Reservation, *, actual: int, event: bytes | None = None) -> None:
    backend().settle(reservation, actual, event)
