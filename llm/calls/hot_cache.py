"""Per-process caches for the gateway's hot path: keys, limits and routes, with short lifetimes.

Each entry lives a few seconds; a change (a key revoked, a plan or a route changed) is announced on a Redis
channel that every gateway process listens to, so the process that made it forgets at once and the others
within a moment. No query runs on a warm path. While the database is unreachable an expired entry may still
be served (stale-if-error, for at most STALE_MAX seconds), so warm tenants keep working.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis

from llm.limits.budget import NS, backend

log = logging.getLogger(__name__)

KEY_TTL = 5.0
UNKNOWN_KEY_TTL = (
    5.0  # a key that does not exist is remembered (by hash) so a flood of bogus keys costs no query
)
LIMITS_TTL = 3.0
ROUTE_TTL = 3.0
STALE_MAX = 600.0


class TTLCache:
    __slots__ = ("data", "max_size", "ttl")

    def __init__(self, ttl: float, max_size: int = 10_000):
        self.ttl = ttl
        self.max_size = max_size
        self.data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        entry = self.data.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def get_stale(self, key: Any) -> Any:
        """The last value even if expired (not older than STALE_MAX past its expiry): for when the source is down."""
        entry = self.data.get(key)
        if entry is None or entry[0] + STALE_MAX < time.monotonic():
            return None
        return entry[1]

    def set(self, key: Any, value: Any, ttl: float | None = None) -> None:
        if len(self.data) >= self.max_size and key not in self.data:
            now = time.monotonic()
            self.data = {k: v for k, v in self.data.items() if v[0] + STALE_MAX >= now}
            if len(self.data) >= self.max_size:
                self.data.clear()
        self.data[key] = (time.monotonic() + (self.ttl if ttl is None else ttl), value)

    def expire_all(self) -> None:
        """Make every entry stale (refetched on next use) but keep it for get_stale()."""
        now = time.monotonic()
        self.data = {k: (min(exp, now), v) for k, (exp, v) in self.data.items()}

    def pop(self, key: Any) -> None:
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()


keys = TTLCache(KEY_TTL, max_size=50_000)
limits = TTLCache(LIMITS_TTL)
routes = TTLCache(ROUTE_TTL)


def forget_limits(tenant_id: int) -> None:
    """The tenant's limits, agent budgets or managed tiers changed: forget them, and the routes resolved under
    its managed tiers, here and (announced) in the other processes."""
    _forget_tenant_here(tenant_id)
    _announce(f"limits:{tenant_id}")


def forget_tenant(tenant_id: int) -> None:
    _forget_tenant_here(tenant_id)
    _announce(f"tenant:{tenant_id}")


def forget_key(key_hash: str) -> None:
    """A key was revoked, expired or changed: this process forgets it now, the others on the announcement."""
    keys.pop(key_hash)
    _announce(f"key:{key_hash}")


def _forget_tenant_here(tenant_id: int) -> None:
    limits.pop(tenant_id)
    for key in [k for k in limits.data if isinstance(k, tuple) and len(k) > 1 and k[1] == tenant_id]:
        limits.pop(key)
    for key in [k for k in routes.data if k[0] == tenant_id or (len(k) > 1 and k[1] == tenant_id)]:
        routes.pop(key)


def clear() -> None:
    keys.clear()
    limits.clear()
    routes.clear()


def expire_all() -> None:
    """Announcements may have been missed: refetch everything on next use, keeping the old values as the
    fallback for a database that is unreachable meanwhile."""
    keys.expire_all()
    limits.expire_all()
    routes.expire_all()


# --- announcements between processes ---------------------------------------------------------------


def _channel() -> str:
    return f"{NS}:gateway:forget"


def _announce(message: str) -> None:
    try:
        backend().sync_client().publish(_channel(), message)
    except (redis.RedisError, OSError):
        log.warning(
            "gateway cache announcement not sent (%s); other processes forget within seconds", message
        )


def apply(message: str) -> None:
    kind, _, ident = message.partition(":")
    if kind == "key":
        keys.pop(ident)
    elif kind in ("limits", "tenant") and ident.isdigit():
        _forget_tenant_here(int(ident))


async def listen() -> None:
    """Apply announcements as they come (a gateway process runs this for its lifetime); reconnects on its own."""
    connected_before = False
    lost = False
    while True:
        try:
            pubsub = backend().async_client().pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(_channel())
            if lost:
                expire_all()  # once per outage, when listening again: what was announced meanwhile is unknown
                lost = False
            connected_before = True
            try:
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        apply(data.decode() if isinstance(data, bytes) else str(data))
            finally:
                await pubsub.aclose()
        except asyncio.CancelledError:
            raise
        except Exception:
            if not lost:
                log.warning("gateway cache listener lost Redis; retrying", exc_info=True)
            lost = lost or connected_before
            await asyncio.sleep(1.0)
