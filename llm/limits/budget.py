"""Atomic budget reservation, rate limits and concurrency in Redis: one round trip to admit a call, one to settle.

PostgreSQL stays the source of truth: a missing TCU counter is rebuilt from UsageEvent sums. Admission refuses
a call once `used + reserved >= cap`, so concurrent calls overshoot a cap by at most one call's worst case.
Settling moves the reservation to `used` and appends the UsageEvent to a Redis stream in the same script, so an
event is durable before the response completes; `llm.metering.queue.drain` moves the stream into PostgreSQL.

One implementation for every mode: with `REDIS_URL` the scripts run on Redis; without it (the embedded default)
the very same scripts run on an in-process Redis (fakeredis with its Lua engine), never a second backend.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, SupportsInt, TypedDict

import redis
from django.conf import settings

from llm.models import UsageEvent
from llm.sync import run_sync

if TYPE_CHECKING:
    from typing import Unpack

    import fakeredis
    import redis.asyncio as aredis
    from redis.commands.core import AsyncScript, Script
    from redis.typing import EncodableT

    # An event loop's client with its admit, settle and fail scripts
    _AsyncEntry = tuple[aredis.Redis, AsyncScript, AsyncScript, AsyncScript]

# Namespaced by the cache prefix so that test runs (and several deployments on one Redis) never mix.
NS = settings.CACHES["default"].get("KEY_PREFIX", "byok")
EVENTS_KEY = f"{NS}:usage:stream"  # the durable usage queue (a stream read by the drainers' consumer group)
LEGACY_EVENTS_KEY = (
    f"{NS}:usage:events"  # the list earlier versions queued to; moved into the stream on drain
)
DEAD_KEY = f"{NS}:usage:dead"  # events the database refused, with the reason (never block the others)
COUNTER_TTL = 40 * 24 * 3600
RESERVED_TTL = 600  # a crashed process's reservations fade after this
CONCURRENCY_TTL = 600
MAX_AMOUNT = (
    2**53 - 1
)  # Lua numbers are doubles: every amount stays exactly representable, INCRBY never overflows
_CB_WINDOW = 60


class BackendUnavailable(Exception):
    """Redis did not answer: the call is refused (503) rather than run unmetered."""


def period_of(dt: datetime | None = None) -> str:
    dt = dt or datetime.now(UTC)
    return f"{dt.year:04d}-{dt.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    year, month = (int(p) for p in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def clamp(value: SupportsInt) -> int:
    """An amount as a non-negative integer that Redis and Lua hold exactly."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(number, 0), MAX_AMOUNT)


@dataclass(frozen=True, slots=True)
class Scope:
    """A TCU budget: the tenant's own cap, the platform's guardrail, an API key's or an Agent's monthly limit."""

    kind: str  # "tenant" | "platform" | "key" | "agent"
    id: int  # the tenant's id for "tenant" and "platform"
    cap: int | None

    def counts(self, mode: str | None) -> bool:
        """Whether settling adds the TCU of a call served in `mode` (None = not known: counted). The guardrail
        ("platform") is reserved on every call with a platform target but counts only what one served."""
        return self.kind != "platform" or mode is None or mode == "platform"

    def used_key(self, period: str) -> str:
        return f"{NS}:tcu:{self.kind}:{self.id}:{period}"

    def reserved_key(self, period: str) -> str:
        return f"{NS}:tcu-resv:{self.kind}:{self.id}:{period}"


@dataclass(frozen=True, slots=True)
class RateLimit:
    name: str  # "tenant" | "key" | "monthly"
    id: int
    limit: int
    window: int  # seconds; 60 for per-minute
    bucket: str = ""  # a fixed bucket name (the calendar month of the monthly cap); else the window's number
    ttl: int = 0  # seconds the bucket lives when named; else the window

    def key(self, now: float) -> str:
        return f"{NS}:rl:{self.name}:{self.id}:{self.bucket or int(now // self.window)}"


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
  redis.call('INCR', KEYS[ccidx]); redis.call('EXPIRE', KEYS[ccidx], CONCURRENCY_TTL)
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
""".replace("RESERVED_TTL", str(RESERVED_TTL)).replace("CONCURRENCY_TTL", str(CONCURRENCY_TTL))

# KEYS: [used_1, resv_1, ..., cc?, events]; ARGV: n, has_cc, reserved, event_json ('' = none), actual_1..actual_n
_SETTLE = """
local n = tonumber(ARGV[1]); local has_cc = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
for i = 1, n do
  local actual = tonumber(ARGV[4 + i])
  local r = redis.call('DECRBY', KEYS[2*i], reserved)
  if r < 0 then redis.call('SET', KEYS[2*i], 0) end
  if redis.call('EXISTS', KEYS[2*i-1]) == 1 and actual ~= 0 then redis.call('INCRBY', KEYS[2*i-1], actual) end
end
if has_cc == 1 then
  local c = redis.call('DECR', KEYS[2*n+1]); if c < 0 then redis.call('SET', KEYS[2*n+1], 0) end
end
if ARGV[4] ~= '' then redis.call('XADD', KEYS[#KEYS], '*', 'e', ARGV[4]) end
return 1
"""

# Count a failover-worthy failure; enough within the window open the target's breaker.
# KEYS: [fail, open]; ARGV: window, threshold, cooldown
_FAIL = """
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if c >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], 1, 'EX', ARGV[3]); redis.call('DEL', KEYS[1]); return 1
end
return 0
"""


def _rebuild_used(scope: Scope, period: str) -> int:
    """The period's settled TCU for a scope, from PostgreSQL."""
    from django.db.models import Sum

    start, end = period_bounds(period)
    columns = {"tenant": "tenant_id", "platform": "tenant_id", "key": "api_key_id", "agent": "agent_id"}
    column = columns[scope.kind]
    qs = UsageEvent.objects.unscoped().filter(created_at__gte=start, created_at__lt=end, **{column: scope.id})
    if scope.kind == "platform":  # the guardrail counts what the platform pays for
        qs = qs.filter(mode="platform")
    return clamp(qs.aggregate(total=Sum("tcu"))["total"] or 0)


_embedded_server: fakeredis.FakeServer | None = None
_embedded_lock = threading.Lock()


def _embedded() -> fakeredis.FakeServer:
    """The in-process Redis of the embedded default, shared by every client of the process."""
    global _embedded_server
    with _embedded_lock:
        if _embedded_server is None:
            import fakeredis

            _embedded_server = fakeredis.FakeServer()
    return _embedded_server


class RedisBackend:
    """Admission, settlement, the circuit breaker, the response cache and the usage queue on one Redis.

    `url=None` is the embedded default: the same scripts on an in-process Redis. The async variants are what the
    gateway awaits; the sync ones serve Celery tasks, commands and the drainer.
    """

    def __init__(self, url: str | None):
        self.url = url
        self.embedded = not url
        self._sync: redis.Redis | None = None
        self._sync_scripts: tuple[Script, ...] = ()  # admit, settle, fail
        self._async: dict[asyncio.AbstractEventLoop, _AsyncEntry] = {}
        self._lock = threading.Lock()

    # --- clients -------------------------------------------------------------------------------
    def _new_sync(self) -> redis.Redis:
        if self.embedded:
            import fakeredis

            return fakeredis.FakeRedis(server=_embedded())
        import redis

        return redis.Redis.from_url(
            self.url or "",
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            health_check_interval=30,
        )

    def _new_async(self) -> aredis.Redis:
        if self.embedded:
            import fakeredis

            return fakeredis.FakeAsyncRedis(server=_embedded())
        import redis.asyncio as aredis

        return aredis.Redis.from_url(
            self.url or "",
            max_connections=256,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            health_check_interval=30,
        )

    def sync_client(self) -> Any:
        """The process's client. Untyped for its callers (the usage queue, the admin's dead letters): redis-py
        types every reply `bytes | str | None` whatever the client, and this one never decodes, so typing it would
        mean narrowing each reply at run time."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    client = self._new_sync()
                    self._sync_scripts = (
                        client.register_script(_ADMIT),
                        client.register_script(_SETTLE),
                        client.register_script(_FAIL),
                    )
                    self._sync = client
        return self._sync

    def _async_entry(self) -> _AsyncEntry:
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is None:
            client = self._new_async()
            # EVALSHA with the script's digest; redis-py loads the script once when Redis does not know it.
            entry = (
                client,
                client.register_script(_ADMIT),
                client.register_script(_SETTLE),
                client.register_script(_FAIL),
            )
            self._async = {lp: e for lp, e in self._async.items() if not lp.is_closed()}
            self._async[loop] = entry
        return entry

    def async_client(self) -> aredis.Redis:
        return self._async_entry()[0]

    # --- argument building ------------------------------------------------------------------------
    @staticmethod
    def _admit_args(
        period: str,
        scopes: list[Scope],
        rates: list[RateLimit],
        concurrency: tuple[str, int | None] | None,
        amount: int,
        circuits: list[str],
        now: float,
    ) -> tuple[list[str], list[EncodableT]]:
        keys: list[str] = []
        for s in scopes:
            keys += [s.used_key(period), s.reserved_key(period)]
        keys += [r.key(now) for r in rates]
        has_cc = concurrency is not None
        if concurrency is not None:
            keys.append(concurrency[0])
        keys += [f"{NS}:cb:open:{c}" for c in circuits]
        args: list[EncodableT] = [now, len(scopes), len(rates), int(has_cc), len(circuits), clamp(amount)]
        args += [clamp(s.cap) if s.cap is not None else -1 for s in scopes]
        for r in rates:
            args += [r.limit, r.ttl or r.window]
        args.append(concurrency[1] if concurrency is not None and concurrency[1] is not None else -1)
        return keys, args

    @staticmethod
    def _interpret(
        result: Any,
        period: str,
        scopes: list[Scope],
        rates: list[RateLimit],
        concurrency: tuple[str, int | None] | None,
        amount: int,
        circuits: list[str],
    ) -> Admission | int:
        code = int(result[0])
        if code == -1:
            return int(result[1]) - 1
        if code == 1:
            s = scopes[int(result[1]) - 1]
            return Admission(refusal=Refusal("cap", scope=s, used=int(result[2]), limit=s.cap or 0))
        if code == 2:
            r = rates[int(result[1]) - 1]
            return Admission(
                refusal=Refusal(
                    "rate",
                    retry_after=max(1, int(result[2])),
                    limit=r.limit,
                    scope=Scope(r.name, r.id, r.limit),
                )
            )
        if code == 3:
            return Admission(
                refusal=Refusal("concurrency", retry_after=1, limit=concurrency[1] or 0 if concurrency else 0)
            )
        open_idx = result[3] if len(result) > 3 else []
        return Admission(
            reservation=Reservation(
                period, tuple(scopes), clamp(amount), concurrency[0] if concurrency else None
            ),
            open_circuits={circuits[int(i) - 1] for i in open_idx},
        )

    def _seed(self, scope: Scope, period: str) -> None:
        self.sync_client().set(scope.used_key(period), _rebuild_used(scope, period), nx=True, ex=COUNTER_TTL)

    def admit(
        self,
        *,
        scopes: list[Scope],
        rates: list[RateLimit],
        concurrency: tuple[str, int | None] | None,
        amount: int,
        circuits: list[str],
        now: float,
    ) -> Admission:
        period = period_of(datetime.fromtimestamp(now, UTC))
        keys, args = self._admit_args(period, scopes, rates, concurrency, amount, circuits, now)
        self.sync_client()
        admit_script = self._sync_scripts[0]
        for _ in range(len(scopes) + 1):
            outcome = self._interpret(
                _guard(admit_script, keys=keys, args=args),
                period,
                scopes,
                rates,
                concurrency,
                amount,
                circuits,
            )
            if isinstance(outcome, Admission):
                return outcome
            self._seed(scopes[outcome], period)
        raise RuntimeError("TCU counters could not be seeded")

    async def aadmit(
        self,
        *,
        scopes: list[Scope],
        rates: list[RateLimit],
        concurrency: tuple[str, int | None] | None,
        amount: int,
        circuits: list[str],
        now: float,
    ) -> Admission:
        period = period_of(datetime.fromtimestamp(now, UTC))
        keys, args = self._admit_args(period, scopes, rates, concurrency, amount, circuits, now)
        admit_script = self._async_entry()[1]
        for _ in range(len(scopes) + 1):
            outcome = self._interpret(
                await _aguard(admit_script, keys=keys, args=args),
                period,
                scopes,
                rates,
                concurrency,
                amount,
                circuits,
            )
            if isinstance(outcome, Admission):
                return outcome
            await run_sync(self._seed, scopes[outcome], period)
        raise RuntimeError("TCU counters could not be seeded")

    @staticmethod
    def _settle_args(
        reservation: Reservation, actual: int, event: bytes | None, mode: str | None
    ) -> tuple[list[str], list[EncodableT]]:
        keys: list[str] = []
        for s in reservation.scopes:
            keys += [s.used_key(reservation.period), s.reserved_key(reservation.period)]
        has_cc = reservation.concurrency_key is not None
        if reservation.concurrency_key is not None:
            keys.append(reservation.concurrency_key)
        keys.append(EVENTS_KEY)
        args: list[EncodableT] = [
            len(reservation.scopes),
            int(has_cc),
            clamp(reservation.amount),
            event or b"",
        ]
        args += [clamp(actual) if s.counts(mode) else 0 for s in reservation.scopes]
        return keys, args

    def settle(
        self, reservation: Reservation, actual: int, event: bytes | None, mode: str | None = None
    ) -> None:
        """Settle once; a reservation whose settle failed (Redis gone) may be settled again by the caller.

        `mode` is the mode of the target that served the call (None = unknown: every scope counts it)."""
        if reservation.settled:
            return
        keys, args = self._settle_args(reservation, actual, event, mode)
        self.sync_client()
        _guard(self._sync_scripts[1], keys=keys, args=args)
        reservation.settled = True

    async def asettle(
        self, reservation: Reservation, actual: int, event: bytes | None, mode: str | None = None
    ) -> None:
        if reservation.settled:
            return
        keys, args = self._settle_args(reservation, actual, event, mode)
        await _aguard(self._async_entry()[2], keys=keys, args=args)
        reservation.settled = True

    def used(self, scope: Scope, period: str, *, seed: bool = True) -> int:
        """Settled TCU of the period; a missing counter is rebuilt from PostgreSQL (and kept, when `seed`)."""
        client = self.sync_client()
        value = client.get(scope.used_key(period))
        if value is None and not seed:
            return _rebuild_used(scope, period)
        if value is None:
            self._seed(scope, period)
            value = client.get(scope.used_key(period))
        return int(value or 0)

    def reset_scope(self, scope: Scope, period: str) -> None:
        self.sync_client().delete(scope.used_key(period), scope.reserved_key(period))

    # --- circuit breaker and response cache ---------------------------------------------------
    async def arecord_failure(self, circuit: str) -> bool:
        """Count a failure of a target; True when this one opened its breaker."""
        opened = await _aguard(
            self._async_entry()[3],
            keys=[f"{NS}:cb:fail:{circuit}", f"{NS}:cb:open:{circuit}"],
            args=[_CB_WINDOW, settings.CIRCUIT_BREAKER_FAILURES, settings.CIRCUIT_BREAKER_COOLDOWN],
        )
        return bool(opened)

    async def aget(self, key: str) -> bytes | str | None:
        try:
            return await self.async_client().get(key)
        except (redis.RedisError, OSError):  # a cache miss is the safe answer when Redis hiccups
            return None

    async def aput(self, key: str, value: bytes, ttl: int) -> None:
        try:
            await self.async_client().set(key, value, ex=max(1, ttl))
        except (redis.RedisError, OSError):  # the answer is already on its way; caching it is optional
            return


def _is_connection_error(exc: BaseException) -> bool:
    import redis

    return isinstance(
        exc, redis.ConnectionError | redis.TimeoutError | ConnectionError | TimeoutError | OSError
    )


class _ScriptArgs(TypedDict):
    keys: list[str]
    args: list[EncodableT]


def _guard(script: Script, **kwargs: Unpack[_ScriptArgs]) -> Any:
    try:
        return script(**kwargs)
    except Exception as exc:
        if _is_connection_error(exc):
            raise BackendUnavailable(exc.__class__.__name__) from None
        raise


async def _aguard(script: AsyncScript, **kwargs: Unpack[_ScriptArgs]) -> Any:
    try:
        return await script(**kwargs)
    except Exception as exc:
        if _is_connection_error(exc):
            raise BackendUnavailable(exc.__class__.__name__) from None
        raise


_backend: RedisBackend | None = None
_backend_lock = threading.Lock()


def backend() -> RedisBackend:
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                _backend = RedisBackend(settings.REDIS_URL or None)
    return _backend


def reset_backend() -> None:
    """Forget clients (tests switch settings; forked workers must not share connections)."""
    global _backend
    _backend = None


def used_tcu(*, tenant_id: int, period: str | None = None, seed: bool = True) -> int:
    """TCU settled so far in the period (UTC month) for a tenant, every mode (`seed`: keep a rebuilt counter)."""
    return backend().used(Scope("tenant", tenant_id, None), period or period_of(), seed=seed)


def platform_used_tcu(*, tenant_id: int, period: str | None = None) -> int:
    """Platform-mode TCU settled so far in the period for a tenant: what the platform's guardrail counts."""
    return backend().used(Scope("platform", tenant_id, None), period or period_of())


def reserve(
    *,
    scopes: list[Scope],
    rates: list[RateLimit] | None = None,
    concurrency: tuple[str, int | None] | None = None,
    amount: int,
    circuits: list[str] | None = None,
) -> Admission:
    return backend().admit(
        scopes=scopes,
        rates=rates or [],
        concurrency=concurrency,
        amount=amount,
        circuits=circuits or [],
        now=time.time(),
    )


def settle(
    reservation: Reservation, *, actual: int, event: bytes | None = None, mode: str | None = None
) -> None:
    backend().settle(reservation, actual, event, mode)
