"""Admission of a call: the cached lookups it needs (limits, budgets, the route) and one Redis round trip that
checks caps, rate limits and concurrency and reserves the worst case."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import redis
from django.conf import settings
from django.db import DatabaseError

from llm.calls import hot_cache
from llm.calls.circuit import circuit_id
from llm.calls.errors import GatewayError
from llm.calls.resolution import RouteError, platform_refusal, resolve_route
from llm.limits import budget
from llm.metering.pricing import estimate_tokens, prompt_chars, tcu_of
from llm.policy import policy
from llm.sync import run_sync
from tenants.allowlist import allows, describe

if TYPE_CHECKING:
    from llm.calls.resolution import ResolvedRoute, ResolvedTarget
    from llm.policy import Limits, ManagedAccess

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def _load_limits(tenant_id: int) -> Limits:
    return policy().limits_for(tenant_id)


def _load_agent_budget(tenant_id: int, agent_id: int) -> int | None:
    return policy().agent_budget_tcu(tenant_id, agent_id)


def hard_cap_message(used: int, cap: int, scope: str = "tenant") -> str:
    _, end = budget.period_bounds(budget.period_of())
    # The tenant's own cap and the platform's guardrail: billing words them (it knows where each is changed).
    if scope in ("tenant", "platform"):
        return policy().hard_cap_message(used, cap, end, scope=scope)
    what = {"key": "This API key's monthly TCU limit", "agent": "This agent's monthly TCU budget"}.get(
        scope, "Monthly TCU limit"
    )
    return (
        f"{what} reached: {used:,} of {cap:,} TCU used. New calls are refused until the period resets on "
        f"{end:%Y-%m-%d %H:%M} UTC or the limit is raised."
    )


@dataclass(slots=True)
class CallContext:
    """Everything known about one call before it goes upstream."""

    tenant_id: int
    request_type: str = "chat"
    api_key_id: int | None = None
    key_spend_limit: int | None = None
    agent_id: int | None = None
    user_id: int | None = None
    # The key's and its agent's allow-lists (tenants/allowlist.py; empty = anything), from the cached KeyInfo.
    key_allowed_models: tuple[str, ...] = ()
    agent_allowed_models: tuple[str, ...] = ()
    request_id: str = field(default_factory=lambda: "req_" + uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)


# After a failed lookup the database is taken as down for a few seconds: warm tenants are served from what the
# process knows without each call waiting for a connect to time out first.
_DATABASE_RETRY_S = 5.0
_database_down_until = [0.0]


# Lookups in flight, per cache and key: concurrent misses of one key share one (see _load_once).
_inflight: dict[tuple[int, Hashable], asyncio.Future] = {}


async def _load_once(
    cache: hot_cache.TTLCache, key: Hashable, load: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run `load` in the gateway's pool, once for every concurrent miss of the same key: a cold start under load
    (or a cache entry expiring under it) is one query and one pool thread per key, not one per call. A caller that
    goes away (a client hanging up) does not cancel the lookup the others wait for."""
    slot = (id(cache), key)
    loop = asyncio.get_running_loop()
    shared = _inflight.get(slot)
    if shared is None or shared.get_loop() is not loop:
        shared = loop.create_task(run_sync(load, *args, **kwargs))
        _inflight[slot] = shared

        def forget(done: asyncio.Future, slot: tuple[int, Hashable] = slot) -> None:
            if _inflight.get(slot) is done:
                del _inflight[slot]

        shared.add_done_callback(forget)
    return await asyncio.shield(shared)


async def _cached(
    cache: hot_cache.TTLCache, key: Hashable, load: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """A cold-path lookup in the gateway's own pool; while the database is unreachable the last known answer
    keeps a warm tenant served (stale-if-error), and only a tenant never seen fails."""
    value = cache.get(key)
    if value is not None:
        return value
    if time.monotonic() < _database_down_until[0]:  # known down: serve what we know without dialling again
        stale = cache.get_stale(key)
        if stale is not None:
            return stale
    try:
        value = await _load_once(cache, key, load, *args, **kwargs)
    except DatabaseError:
        _database_down_until[0] = time.monotonic() + _DATABASE_RETRY_S
        stale = cache.get_stale(key)
        if stale is None:
            raise GatewayError(
                503,
                "The gateway cannot reach its database right now; retry shortly.",
                type="api_error",
                code="service_unavailable",
                retry_after=2,
            ) from None
        log.warning("database unreachable; serving a warm tenant from its last known settings")
        return stale
    except (redis.ConnectionError, redis.TimeoutError):
        raise GatewayError(
            503,
            "The gateway's metering store is unreachable, so calls are refused rather than run "
            "unmetered; retry shortly.",
            type="api_error",
            code="service_unavailable",
            retry_after=2,
        ) from None
    cache.set(key, value)
    return value


async def limits_for(tenant_id: int) -> Limits:
    return await _cached(hot_cache.limits, tenant_id, _load_limits, tenant_id)


def _agent_budget_boxed(tenant_id: int, agent_id: int) -> tuple[int | None]:
    return (_load_agent_budget(tenant_id, agent_id),)


async def agent_budget(tenant_id: int, agent_id: int | None) -> int | None:
    if agent_id is None:
        return None
    boxed = await _cached(
        hot_cache.limits, ("agent-budget", tenant_id, agent_id), _agent_budget_boxed, tenant_id, agent_id
    )
    return boxed[0]


def _managed_boxed(tenant_id: int, agent_id: int | None) -> tuple[ManagedAccess | None]:
    return (policy().managed_access(tenant_id, agent_id),)


async def managed_access(tenant_id: int, agent_id: int | None) -> ManagedAccess | None:
    """The agent's managed tier (None: not managed), cached like the limits."""
    boxed = await _cached(
        hot_cache.limits, ("managed", tenant_id, agent_id), _managed_boxed, tenant_id, agent_id
    )
    return boxed[0]


async def resolve(ctx: CallContext, model: str, *, embeddings: bool = False) -> ResolvedRoute:
    """The route of a requested model, within what the key and its agent may call (403 otherwise)."""
    scoped = bool(ctx.key_allowed_models or ctx.agent_allowed_models)
    if scoped and ":" in model:  # a model id or route named outright: refused before anything is looked up
        for patterns, whose in _allow_lists(ctx):
            if not allows(patterns, model.strip()):
                raise _not_allowed(whose, patterns)
    route = await _resolve_any(ctx, model, embeddings=embeddings)
    return _within_allow_lists(ctx, route) if scoped else route


def _allow_lists(ctx: CallContext) -> list[tuple[tuple[str, ...], str]]:
    return [
        (patterns, whose)
        for patterns, whose in ((ctx.key_allowed_models, "key"), (ctx.agent_allowed_models, "agent"))
        if patterns
    ]


def _within_allow_lists(ctx: CallContext, route: ResolvedRoute) -> ResolvedRoute:
    """A route is checked by its name (whatever its targets); `default` and a model by what they resolve to, a
    `default` fallback outside a list being left out of the call. No query: the lists came with the key."""
    for patterns, whose in _allow_lists(ctx):
        if route.name.startswith("route:") or (route.name == "default" and "default" in patterns):
            if not allows(patterns, route.name):
                raise _not_allowed(whose, patterns)
            continue
        if not allows(patterns, route.targets[0].model_id) and not allows(patterns, route.name):
            raise _not_allowed(whose, patterns)
        kept = tuple(t for t in route.targets if allows(patterns, t.model_id))
        if route.name == "default" and len(kept) < len(route.targets):
            route = replace(route, targets=kept, weighted=sum(1 for t in kept if t.weight > 0) >= 2)
    return route


def _not_allowed(whose: str, patterns: tuple[str, ...]) -> GatewayError:
    return GatewayError(
        403,
        f"This {whose} may call only: {describe(patterns)}.",
        type="permission_error",
        code="model_not_allowed",
        param="model",
    )


async def _resolve_any(ctx: CallContext, model: str, *, embeddings: bool = False) -> ResolvedRoute:
    try:
        return await _cached(
            hot_cache.routes,
            (ctx.tenant_id, ctx.agent_id, model, embeddings),
            resolve_route,
            tenant_id=ctx.tenant_id,
            agent_id=ctx.agent_id,
            model=model,
            embeddings=embeddings,
        )
    except RouteError as exc:
        raise GatewayError(
            400, str(exc), code=getattr(exc, "code", "model_not_found"), param=getattr(exc, "param", "model")
        ) from None


def _worst_case_tcu(body: dict, target: ResolvedTarget, *, embeddings: bool = False) -> int:
    """The most this request can cost as sent: its prompt, and every completion (`n`) at its output limit (the
    model's maximum when the request names none), so one request can overshoot a cap by at most itself."""
    prompt = estimate_tokens(prompt_chars(body))
    in_p = target.input_usd_per_mtok or Decimal(0)
    out_p = target.output_usd_per_mtok or Decimal(0)
    if embeddings:
        return budget.clamp(tcu_of(Decimal(prompt) * in_p / Decimal(1_000_000)))
    max_out = (
        body.get("max_completion_tokens")
        or body.get("max_tokens")
        or (target.params or {}).get("max_tokens")
        or target.max_output_tokens
        or settings.DEFAULT_MAX_OUTPUT_TOKENS
    )
    n = body.get("n")
    copies = n if isinstance(n, int) and n > 0 else 1
    outputs = Decimal(int(max_out)) * Decimal(copies)
    return budget.clamp(tcu_of((Decimal(prompt) * in_p + outputs * out_p) / Decimal(1_000_000)))


def _costs_nothing(target: ResolvedTarget) -> bool:
    """Whether every call to the target is metered at $0 (every price zero, an empty cache price being the input
    price; no provider-reported cost)."""
    return (
        target.input_usd_per_mtok is not None
        and target.output_usd_per_mtok is not None
        and target.input_usd_per_mtok <= 0
        and target.output_usd_per_mtok <= 0
        and (target.cache_read_usd_per_mtok or 0) <= 0
        and (target.cache_write_usd_per_mtok or 0) <= 0
        and not target.cost_reported
    )


async def admit(
    ctx: CallContext, body: dict, targets: list[ResolvedTarget], *, embeddings: bool = False
) -> tuple[budget.Reservation, set[str]]:
    """Check plan, caps, rate limits and concurrency in one Redis round trip; reserve the worst case."""
    limits = await limits_for(ctx.tenant_id)
    primary = targets[0]
    blocked = (
        platform_refusal(await managed_access(ctx.tenant_id, ctx.agent_id), limits)
        if primary.mode == "platform"
        else None
    )
    if blocked is not None:
        raise GatewayError(403, blocked, type="permission_error", code="platform_mode_not_allowed")
    # The tenant's own cap counts every call, in every mode; without one it is counted, never refused (a BYOK or
    # custom tenant is never stopped by the platform). The platform's guardrail is reserved on any call that
    # may reach a platform target, and counts only what one serves (0 = no platform spend included).
    # Caps limit spend: a call that cannot cost anything (every target free, e.g. the tenant's own unpriced
    # endpoint) is counted but never refused by one, not even by a cap of 0 or one already reached.
    free = all(_costs_nothing(t) for t in targets)
    scopes = [budget.Scope("tenant", ctx.tenant_id, None if free else limits.own_hard_tcu)]
    if any(t.mode == "platform" for t in targets):
        scopes.append(budget.Scope("platform", ctx.tenant_id, None if free else limits.platform_hard_tcu))
    if ctx.api_key_id is not None and ctx.key_spend_limit is not None:
        scopes.append(budget.Scope("key", ctx.api_key_id, None if free else ctx.key_spend_limit))
    agent_cap = await agent_budget(ctx.tenant_id, ctx.agent_id)
    if agent_cap is not None and ctx.agent_id is not None:
        scopes.append(budget.Scope("agent", ctx.agent_id, None if free else agent_cap))
    rates = []
    if limits.rpm_tenant:
        rates.append(budget.RateLimit("tenant", ctx.tenant_id, limits.rpm_tenant, 60))
    if limits.rpm_key and ctx.api_key_id is not None:
        rates.append(budget.RateLimit("key", ctx.api_key_id, limits.rpm_key, 60))
    if limits.monthly_request_cap:
        period = budget.period_of()
        _, period_end = budget.period_bounds(period)
        rates.append(
            budget.RateLimit(
                "monthly",
                ctx.tenant_id,
                limits.monthly_request_cap,
                31 * 24 * 3600,
                bucket=period,
                ttl=int(period_end.timestamp() - time.time()) + 3600,
            )
        )
    concurrency = (
        (f"{budget.NS}:cc:{ctx.tenant_id}", limits.max_concurrency) if limits.max_concurrency else None
    )
    circuits = [circuit_id(t) for t in targets]
    try:
        admission = await budget.backend().aadmit(
            scopes=scopes,
            rates=rates,
            concurrency=concurrency,
            amount=_worst_case_tcu(body, primary, embeddings=embeddings),
            circuits=circuits,
            now=time.time(),
        )
    except budget.BackendUnavailable:
        raise GatewayError(
            503,
            "The gateway's metering store is unreachable, so calls are refused rather than run "
            "unmetered; retry shortly.",
            type="api_error",
            code="service_unavailable",
            retry_after=2,
        ) from None
    refusal = admission.refusal
    if refusal is not None:
        if refusal.kind == "cap":
            scope = refusal.scope.kind if refusal.scope else "tenant"
            raise GatewayError(
                402,
                hard_cap_message(refusal.used, refusal.limit, scope),
                type="insufficient_quota",
                code="tcu_hard_cap_reached" if scope in ("tenant", "platform") else f"{scope}_budget_reached",
            )
        if refusal.kind == "rate":
            name = refusal.scope.kind if refusal.scope else "tenant"
            what = {
                "tenant": "requests per minute for this workspace",
                "key": "requests per minute for this key",
                "monthly": "requests this month",
            }.get(name, "requests")
            raise GatewayError(
                429,
                f"Rate limit reached: {refusal.limit} {what}. Retry after {refusal.retry_after} s.",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                retry_after=refusal.retry_after,
            )
        raise GatewayError(
            429,
            f"Too many concurrent calls: at most {refusal.limit} at once on your plan.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            retry_after=1,
        )
    assert admission.reservation is not None
    return admission.reservation, admission.open_circuits
