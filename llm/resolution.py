"""Route resolution for the router: a requested model name → the ordered targets (endpoint, key, price) to try.

Reads the catalog, the tenant's preferences, routes and credentials once, then serves warm calls from an
in-process cache keyed by the tenant's config version, so a warm call runs no query at all.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from django.core.cache import cache

_VERSION_MEMO_SECONDS = 1.0
_GLOBAL_KEY = "llm:cfgver:global"
_lock = threading.Lock()
_version_memo: dict[Any, tuple[float, str]] = {}


# --- config versions ------------------------------------------------------------------------------

def _tenant_key(tenant_id: int) -> str:
    return f"llm:cfgver:t:{tenant_id}"


def _read_versions(keys: list[str]) -> dict[str, str]:
    found = cache.get_many(keys)
    for key in keys:
        if not found.get(key):
            token = uuid.uuid4().hex[:12]
            cache.add(key, token, timeout=None)
            found[key] = cache.get(key) or token
    return found


def global_version() -> str:
    """The catalog's version (changes on every catalog edit)."""
    now = time.monotonic()
    memo = _version_memo.get("global")
    if memo and memo[0] > now:
        return memo[1]
    version = _read_versions([_GLOBAL_KEY])[_GLOBAL_KEY]
    _version_memo["global"] = (now + _VERSION_MEMO_SECONDS, version)
    return version


def config_version(tenant_id: int) -> str:
    """Changes whenever anything resolve_route depends on changes (the catalog or this tenant's config)."""
    now = time.monotonic()
    memo = _version_memo.get(tenant_id)
    if memo and memo[0] > now:
        return memo[1]
    key = _tenant_key(tenant_id)
    found = _read_versions([_GLOBAL_KEY, key])
    version = f"{found[_GLOBAL_KEY]}.{found[key]}"
    with _lock:
        if len(_version_memo) > 50_000:
            _version_memo.clear()
        _version_memo[tenant_id] = (now + _VERSION_MEMO_SECONDS, version)
        _version_memo["global"] = (now + _VERSION_MEMO_SECONDS, found[_GLOBAL_KEY])
    return version


def bump_config_version(tenant_id: int | None = None) -> None:
    """Make every cached route of a tenant (None: of every tenant, after a catalog change) stale at once."""
    key = _GLOBAL_KEY if tenant_id is None else _tenant_key(tenant_id)
    cache.set(key, uuid.uuid4().hex[:12], timeout=None)
    with _lock:
        if tenant_id is None:
            _version_memo.clear()
            _routes.clear()
        else:
            _version_memo.pop(tenant_id, None)
    if tenant_id is None:
        from . import catalog

        catalog.forget_memo()
    try:
        from . import gateway_cache
    except ImportError:  # pragma: no cover - the gateway is optional for configuration
        return
    if tenant_id is None:
        gateway_cache.routes.clear()
    else:
        gateway_cache.forget_tenant(tenant_id)


_routes: OrderedDict[tuple, Any] = OrderedDict()
