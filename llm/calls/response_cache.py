"""The response cache of deterministic non-streamed chat calls (routes with a cache TTL)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import orjson

from llm.calls.admission import CallContext
from llm.limits import budget

if TYPE_CHECKING:
    from llm.calls.resolution import ResolvedRoute, ResolvedTarget


def is_deterministic(body: dict, target: ResolvedTarget) -> bool:
    """Only a request that must give the same answer twice may be answered from the cache."""
    temperature = body.get("temperature", (target.params or {}).get("temperature"))
    return (
        not body.get("stream")
        and isinstance(temperature, int | float)
        and float(temperature) == 0
        and body.get("n") in (None, 1)
    )


def cache_key(ctx: CallContext, route: ResolvedRoute, body: dict) -> str:
    digest = hashlib.sha256(
        orjson.dumps({k: v for k, v in body.items() if k != "user"}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    return f"{budget.NS}:rcache:{ctx.tenant_id}:{route.name}:{digest}"


async def cache_get(key: str) -> dict | None:
    raw = await budget.backend().aget(key)
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def cache_put(key: str, result: dict, ttl: int) -> None:
    try:
        raw = orjson.dumps(result)
    except TypeError:  # what orjson cannot write is not worth caching
        return
    await budget.backend().aput(key, raw, ttl)
