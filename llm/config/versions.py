"""Config versions: a token per tenant (and one for the catalog) that changes on every configuration change, so
caches keyed by it (routes, the catalog) go stale at once in every process. A leaf: it imports nothing of llm;
who caches something listens to `config_changed`."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from django.core.cache import cache
from django.dispatch import Signal

# Sent with tenant_id (None: the catalog changed, so every tenant's config) after a version was bumped.
config_changed = Signal()

_VERSION_MEMO_SECONDS = 1.0
_GLOBAL_KEY = "llm:cfgver:global"
_lock = threading.Lock()
_version_memo: dict[Any, tuple[float, str]] = {}


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
        else:
            _version_memo.pop(tenant_id, None)
    config_changed.send(sender=None, tenant_id=tenant_id)


def forget_version_memo() -> None:
    """Forget the versions read in the last second (tests, and after a catalog change)."""
    with _lock:
        _version_memo.clear()
