"""Per-process caches for the gateway's hot path: keys, limits and routes, with short lifetimes.

Each entry lives a few seconds, so a revocation or a configuration change reaches every worker within
that time; the process that made the change forgets its entry at once. No query runs on a warm path.
"""

from __future__ import annotations

import time
from typing import Any

KEY_TTL = 5.0
LIMITS_TTL = 3.0
ROUTE_TTL = 3.0


class TTLCache:
    __slots__ = ("data", "max_size", "ttl")

    def __init__(self, ttl: float, max_size: int = 10_000):
        self.ttl = ttl
        self.max_size = max_size
        self.data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self.data.pop(key, None)
            return None
        return entry[1]

    def set(self, key: Any, value: Any) -> None:
        if len(self.data) >= self.max_size:
            self.data.clear()
        self.data[key] = (time.monotonic() + self.ttl, value)

    def pop(self, key: Any) -> None:
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()


keys = TTLCache(KEY_TTL)
limits = TTLCache(LIMITS_TTL)
routes = TTLCache(ROUTE_TTL)


def forget_limits(tenant_id: int) -> None:
    limits.pop(tenant_id)


def forget_tenant(tenant_id: int) -> None:
    limits.pop(tenant_id)
    for key in [k for k in routes.data if k[0] == tenant_id]:
        routes.pop(key)


def clear() -> None:
    keys.clear()
    limits.clear()
    routes.clear()
