"""The router: admits a call against caps and limits, tries the route's targets with failover and a shared
circuit breaker, meters the outcome exactly once. Used by the gateway and by Celery tasks alike."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings

from . import budget, gateway_cache
from .metering import Usage, estimate_tokens, prompt_chars, tcu_of

log = logging.getLogger(__name__)

FAILOVER_KINDS = {"rate_limit", "timeout", "unavailable"}
_CB_WINDOW = 60


class GatewayError(Exception):
    """An error answered in OpenAI's format: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, retry_after: int | None = None,
                 error_kind: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.error_kind = error_kind or code or type

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}})


@dataclass(frozen=True, slots=True)
class DefaultLimits:
    """Limits when billing is not installed: the environment's caps, no rate limits."""

    plan: str = "free"
    tier: str = ""
    warn_tcu: int = 0
    hard_tcu: int = 0
    rpm_tenant: int | None = None
    rpm_key: int | None = None
    max_concurrency: int | None = None
    monthly_request_cap: int | None = None
    markup: Decimal = Decimal(0)
    platform_allowed: bool = True
    platform_block_reason: str = ""
    included_tokens: int = 0


def _load_limits(tenant_id: int) -> Any:
    try:
        from billing.caps import limits_for
    except ImportError:
        return DefaultLimits(warn_tcu=settings.SPEND_ALERT_TCU_WARN, hard_tcu=settings.SPEND_ALERT_TCU_HARD)
    return limits_for(tenant_id)


def _load_agent_budget(tenant_id: int, agent_id: int) -> int | None:
    try:
        from billing.caps import agent_budget_tcu
    except ImportError:
        return None
    return agent_budget_tcu(tenant_id, agent_id)


def hard_cap_message(used: int, cap: int, scope: str = "tenant") -> str:
    _, end = budget.period_bounds(budget.period_of())
    if scope == "tenant":
        try:
            from billing.caps import hard_cap_message as billing_message
        except ImportError:
            pass
        else:
            return billing_message(used, cap, end)
    what = {"tenant": "Monthly TCU hard cap", "key": "This API key's monthly TCU limit",
            "agent": "This agent's monthly TCU budget"}.get(scope, "Monthly TCU limit")
    return (f"{what} reached: {used:,} of {cap:,} TCU used. New calls are refused until the period resets on "
            f"{end:%Y-%m-%d %H:%M} UTC or the limit is raised.")


@dataclass(slots=True)
class CallContext:
    """Everything known about one call before it goes upstream."""

    tenant_id: int
    request_type: str = "chat"
    api_key_id: int | None = None
    key_spend_limit: int | None = None
    agent_id: int | None = None
    user_id: int | None = None
    request_id: str = field(default_factory=lambda: "req_" + uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)


async def limits_for(tenant_id: int) -> Any:
    cached = gateway_cache.limits.get(tenant_id)
    if cached is None:
        cached = await sync_to_async(_load_limits)(tenant_id)
        gateway_cache.limits.set(tenant_id, cached)
    return cached


async def agent_budget(tenant_id: int, agent_id: int | None) -> int | None:
    if agent_id is None:
        return None
    key = ("agent-budget", tenant_id, agent_id)
    cached = gateway_cache.limits.get(key)
    if cached is None:
        cached = (await sync_to_async(_load_agent_budget)(tenant_id, agent_id),)
        gateway_cache.limits.set(key, cached)
    return cached[0]


async def resolve(ctx: CallContext, model: str, *, embeddings: bool = False) -> Any:
    from .resolution import RouteError, resolve_route

    key = (ctx.tenant_id, ctx.agent_id, model, embeddings)
    route = gateway_cache.routes.get(key)
    if route is None:
        try:
            route = await sync_to_async(resolve_route)(tenant_id=ctx.tenant_id, agent_id=ctx.agent_id,
                                                        model=model, embeddings=embeddings)
        except RouteError as exc:
            raise GatewayError(400, str(exc), code=getattr(exc, "code", "model_not_found"),
                               param=getattr(exc, "param", "model")) from None
        gateway_cache.routes.set(key, route)
    return route


def circuit_id(target: Any) -> str:
    raw = f"{target.provider}|{target.base_url}|{target.upstream_model}|{target.credential_id}"
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:16]


def order_targets(route: Any) -> tuple[list[Any], str]:
    """Primary first (a weighted draw on A/B routes), then the rest in order; returns the variant drawn."""
    targets = list(route.targets)
    if not route.weighted or len(targets) < 2:
        return targets, ""
    weighted = [t for t in targets if t.weight > 0]
    pick = random.choices(weighted, weights=[t.weight for t in weighted])[0]
    return [pick] + [t for t in targets if t is not pick], pick.model_id


def _worst_case_tcu(body: dict, target: Any) -> int:
    prompt = estimate_tokens(prompt_chars(body))
    max_out = body.get("max_completion_tokens") or body.get("max_tokens") or target.params.get("max_tokens") \
        or target.max_output_tokens or 4096
    in_p = target.input_usd_per_mtok or Decimal(0)
    out_p = target.output_usd_per_mtok or Decimal(0)
    return tcu_of((Decimal(prompt) * in_p + Decimal(int(max_out)) * out_p) / Decimal(1_000_000))


async def admit(ctx: CallContext, body: dict, targets: list[Any]) -> tuple[budget.Reservation, set[str]]:
    """Check plan, caps, rate limits and concurrency in one Redis round trip; reserve the worst case."""
    limits = await limits_for(ctx.tenant_id)
    primary = targets[0]
    if primary.mode == "platform" and not limits.platform_allowed:
        raise GatewayError(403, limits.platform_block_reason or
                           "Your plan does not include platform-managed models; use your own key (BYOK).",
                           type="permission_error", code="platform_mode_not_allowed")
    scopes = [budget.Scope("tenant", ctx.tenant_id, limits.hard_tcu)]  # 0 blocks every call
    if ctx.api_key_id is not None and ctx.key_spend_limit is not None:
        scopes.append(budget.Scope("key", ctx.api_key_id, ctx.key_spend_limit))
    agent_cap = await agent_budget(ctx.tenant_id, ctx.agent_id)
    if agent_cap is not None and ctx.agent_id is not None:
        scopes.append(budget.Scope("agent", ctx.agent_id, agent_cap))
    rates = []
    if limits.rpm_tenant:
        rates.append(budget.RateLimit("tenant", ctx.tenant_id, limits.rpm_tenant, 60))
    if limits.rpm_key and ctx.api_key_id is not None:
        rates.append(budget.RateLimit("key", ctx.api_key_id, limits.rpm_key, 60))
    if limits.monthly_request_cap:
        rates.append(budget.RateLimit("monthly", ctx.tenant_id, limits.monthly_request_cap, 31 * 24 * 3600))
    concurrency = (f"{budget.NS}:cc:{ctx.tenant_id}", limits.max_concurrency) if limits.max_concurrency else None
    circuits = [circuit_id(t) for t in targets]
    b = budget.backend()
    admission = await b.aadmit(scopes=scopes, rates=rates, concurrency=concurrency,
                               amount=_worst_case_tcu(body, primary), circuits=circuits, now=time.time())
    refusal = admission.refusal
    if refusal is not None:
        if refusal.kind == "cap":
            scope = refusal.scope.kind if refusal.scope else "tenant"
            raise GatewayError(402, hard_cap_message(refusal.used, refusal.limit, scope), type="insufficient_quota",
                               code="tcu_hard_cap_reached" if scope == "tenant" else f"{scope}_budget_reached")
        if refusal.kind == "rate":
            name = refusal.scope.kind if refusal.scope else "tenant"
            what = {"tenant": "requests per minute for this workspace", "key": "requests per minute for this key",
                    "monthly": "requests this month"}.get(name, "requests")
            raise GatewayError(429, f"Rate limit reached: {refusal.limit} {what}. Retry after "
                               f"{refusal.retry_after} s.", type="rate_limit_error", code="rate_limit_exceeded",
                               retry_after=refusal.retry_after)
        raise GatewayError(429, f"Too many concurrent calls: at most {refusal.limit} at once on your plan.",
                           type="rate_limit_error", code="rate_limit_exceeded", retry_after=1)
    assert admission.reservation is not None
    return admission.reservation, admission.open_circuits


async def record_failure(target: Any) -> None:
    """Count a failover-worthy failure; enough of them within a minute open the target's breaker."""
    cid = circuit_id(target)
    b = budget.backend()
    if isinstance(b, budget.MemoryBackend):
        now = time.time()
        with b.lock:
            key = f"{budget.NS}:cb:fail:{cid}"
            b.values[key] = (b._get(key, now) or 0) + 1
            b.expiry.setdefault(key, now + _CB_WINDOW)
            if b.values[key] >= settings.CIRCUIT_BREAKER_FAILURES:
                b.values[f"{budget.NS}:cb:open:{cid}"] = 1
                b.expiry[f"{budget.NS}:cb:open:{cid}"] = now + settings.CIRCUIT_BREAKER_COOLDOWN
        return
    client = b.async_client()
    pipe = client.pipeline(transaction=False)
    pipe.incr(f"{budget.NS}:cb:fail:{cid}")
    pipe.expire(f"{budget.NS}:cb:fail:{cid}", _CB_WINDOW, nx=True)
    count, _ = await pipe.execute()
    if count >= settings.CIRCUIT_BREAKER_FAILURES:
        await client.set(f"{budget.NS}:cb:open:{cid}", 1, ex=settings.CIRCUIT_BREAKER_COOLDOWN)
        await client.delete(f"{budget.NS}:cb:fail:{cid}")
        log.warning("circuit opened for %s %s", target.provider, target.upstream_model)


def provider_target(target: Any) -> Any:
    from .providers import Target, Timeouts

    return Target(provider=target.provider, protocol=target.protocol, base_url=target.base_url,
                  api_key=target.api_key, model=target.upstream_model, options=target.options,
                  timeouts=Timeouts(connect=settings.LLM_CONNECT_TIMEOUT, first_byte=settings.LLM_FIRST_BYTE_TIMEOUT,
                                    idle=settings.LLM_IDLE_TIMEOUT))


def upstream_body(body: dict, target: Any) -> dict:
    """The request with the route's defaults filled in where the client left them out."""
    params = target.params or {}
    if not params:
        return body
    merged = dict(body)
    for name in ("temperature", "max_tokens"):
        if name in params and name not in merged and not (name == "max_tokens" and "max_completion_tokens" in merged):
            merged[name] = params[name]
    return merged


def error_for(exc: Any) -> GatewayError:
    """The gateway's answer once every target failed with this provider error."""
    kind = exc.kind
    if kind == "rate_limit":
        return GatewayError(429, f"{exc.message}", type="rate_limit_error", code="rate_limit_exceeded",
                            retry_after=int(exc.retry_after or 1), error_kind=kind)
    if kind == "timeout":
        return GatewayError(504, exc.message, type="api_error", code="upstream_timeout", error_kind=kind)
    if kind == "auth":
        return GatewayError(502, exc.message, type="api_error", code="upstream_auth", error_kind=kind)
    if kind == "not_found":
        return GatewayError(502, exc.message, type="api_error", code="model_not_found", error_kind=kind)
    if kind == "bad_request":
        return GatewayError(400, exc.message, type="invalid_request_error", code="upstream_bad_request",
                            error_kind=kind)
    return GatewayError(502, exc.message, type="api_error", code="upstream_unavailable", error_kind=kind)


def _should_fail_over(exc: Any, target: Any) -> bool:
    return exc.kind in FAILOVER_KINDS or (exc.kind == "auth" and target.mode == "platform")


def new_usage(ctx: CallContext, route: Any, target: Any, variant: str) -> Usage:
    return Usage(request_id=ctx.request_id, tenant_id=ctx.tenant_id, request_type=ctx.request_type,
                 api_key_id=ctx.api_key_id, agent_id=ctx.agent_id, user_id=ctx.user_id,
                 mode=target.mode, provider=target.provider, model=target.model_id, tier=target.tier or "",
                 route=route.name[:100], variant=variant)


def usage_from(usage: Usage, upstream_usage: dict | None) -> None:
    if not upstream_usage:
        return
    usage.input_tokens = int(upstream_usage.get("prompt_tokens") or 0)
    usage.output_tokens = int(upstream_usage.get("completion_tokens") or 0)
    details = upstream_usage.get("prompt_tokens_details") or {}
    usage.cached_tokens = int(details.get("cached_tokens") or 0)


def is_deterministic(body: dict, target: Any) -> bool:
    """Only a request that must give the same answer twice may be answered from the cache."""
    temperature = body.get("temperature", (target.params or {}).get("temperature"))
    return not body.get("stream") and temperature is not None and float(temperature) == 0 \
        and int(body.get("n") or 1) == 1


def cache_key(ctx: CallContext, route: Any, body: dict) -> str:
    digest = hashlib.sha256(orjson.dumps({k: v for k, v in body.items() if k != "user"},
                                         option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{budget.NS}:rcache:{ctx.tenant_id}:{route.name}:{digest}"


async def cache_get(key: str) -> dict | None:
    b = budget.backend()
    if isinstance(b, budget.MemoryBackend):
        with b.lock:
            raw: Any = b.values.get(key) if b.expiry.get(key, 0) > time.time() else None
    else:
        raw = await b.async_client().get(key)
    return orjson.loads(raw) if raw else None


async def cache_put(key: str, result: dict, ttl: int) -> None:
    b = budget.backend()
    raw = orjson.dumps(result)
    if isinstance(b, budget.MemoryBackend):
        with b.lock:
            b.values[key] = raw  # type: ignore[assignment]
            b.expiry[key] = time.time() + ttl
    else:
        await b.async_client().set(key, raw, ex=ttl)


class Call:
    """One admitted call: tries targets, then settles the reservation and queues exactly one UsageEvent."""

    def __init__(self, ctx: CallContext, route: Any, body: dict, *, embeddings: bool = False):
        self.ctx = ctx
        self.route = route
        self.body = body
        self.embeddings = embeddings
        self.targets, self.variant = order_targets(route)
        self.reservation: budget.Reservation | None = None
        self.open_circuits: set[str] = set()
        self.usage: Usage | None = None
        self.finished = False
        self.cache_hit = False
        # True only while the call waits for the provider (see _upstream): the one place where the gateway may
        # cancel it when its client hangs up (never during settling, so the usage event is always written).
        self.awaiting_upstream = False

    def _check_prices(self) -> None:
        for t in self.targets[:1]:
            if t.mode in ("platform", "byok") and (t.input_usd_per_mtok is None or t.output_usd_per_mtok is None):
                raise GatewayError(400, f"The model {t.model_id} has no known price, so it cannot be metered; "
                                   "ask an admin to add it to the catalog or pick a catalog model.",
                                   code="model_price_unknown", param="model")

    async def start(self) -> None:
        self._check_prices()
        self.reservation, self.open_circuits = await admit(self.ctx, self.body, self.targets)

    def _candidates(self) -> list[tuple[int, Any]]:
        indexed = list(enumerate(self.targets))
        usable = [(i, t) for i, t in indexed if circuit_id(t) not in self.open_circuits]
        return usable or indexed[:1]  # every breaker open: still try the primary rather than fail blind

    async def finish(self, usage: Usage, target: Any | None) -> None:
        """Price the usage, settle the reservation and queue the event (durable before the reply ends)."""
        if self.finished:
            return
        self.finished = True
        limits = await limits_for(self.ctx.tenant_id)
        if target is not None:
            usage.price(target.input_usd_per_mtok, target.output_usd_per_mtok, limits.markup)
        usage.latency_ms = int((time.perf_counter() - self.ctx.started) * 1000)
        self.usage = usage
        from . import metrics

        metrics.observe(usage)
        if self.reservation is not None:
            await budget.backend().asettle(self.reservation, usage.tcu, usage.to_json())
        else:
            await sync_to_async(_record_unadmitted)(usage)

    async def fail(self, error: GatewayError, target: Any | None, depth: int = 0) -> None:
        t = target or (self.targets[0] if self.targets else None)
        usage = new_usage(self.ctx, self.route, t, self.variant) if t is not None else Usage(
            request_id=self.ctx.request_id, tenant_id=self.ctx.tenant_id, request_type=self.ctx.request_type)
        usage.status = "error"
        usage.error_kind = error.error_kind
        usage.http_status = error.status
        usage.fallback_depth = depth
        await self.finish(usage, None)

    async def complete(self, call_kind: str = "chat") -> dict:
        """Non-streamed chat or embeddings: returns the OpenAI-shaped body."""
        from .providers import ProviderError, get_adapter

        rkey = None
        ttl = getattr(self.route, "cache_ttl", None)
        if ttl and call_kind == "chat" and self.targets and is_deterministic(self.body, self.targets[0]):
            rkey = cache_key(self.ctx, self.route, self.body)
            cached = await cache_get(rkey)
            if cached is not None:
                usage = new_usage(self.ctx, self.route, self.targets[0], self.variant)
                usage_from(usage, cached.get("usage"))
                usage.cached = True
                self.cache_hit = True
                await self.finish(usage, self.targets[0])
                return cached
        last_exc: Any = None
        last_target = None
        depth = 0
        for depth, target in self._candidates():
            adapter = get_adapter(target.protocol)
            body = upstream_body(self.body, target)
            send = adapter.embeddings if call_kind == "embeddings" else adapter.chat
            try:
                result = await self._upstream(send(provider_target(target), body))
            except asyncio.CancelledError:  # the client hung up while the provider was working
                await self._hung_up(target, depth)
                raise
            except ProviderError as exc:
                last_exc, last_target = exc, target
                if _should_fail_over(exc, target):
                    await record_failure(target)
                    continue
                break
            usage = new_usage(self.ctx, self.route, target, self.variant)
            usage.fallback_depth = depth
            usage_from(usage, result.get("usage"))
            await self.finish(usage, target)
            if rkey is not None:
                await cache_put(rkey, result, int(ttl or 0))
            return result
        error = error_for(last_exc)
        await self.fail(error, last_target, depth)
        raise error

    async def stream(self) -> AsyncIterator[dict]:
        """Streamed chat: failover only before the first chunk; yields OpenAI chunks ending with usage."""
        from .providers import ProviderError, get_adapter

        last_exc: Any = None
        last_target = None
        depth = 0
        for depth, target in self._candidates():
            adapter = get_adapter(target.protocol)
            gen = adapter.stream_chat(provider_target(target), upstream_body(self.body, target))
            try:
                first = await self._upstream(gen.__anext__())
            except StopAsyncIteration:
                first = None
            except asyncio.CancelledError:  # the client hung up before the first chunk
                await gen.aclose()
                await self._hung_up(target, depth)
                raise
            except ProviderError as exc:
                last_exc, last_target = exc, target
                await gen.aclose()
                if _should_fail_over(exc, target):
                    await record_failure(target)
                    continue
                break
            usage = new_usage(self.ctx, self.route, target, self.variant)
            usage.fallback_depth = depth
            usage.ttft_ms = int((time.perf_counter() - self.ctx.started) * 1000)
            relay = self._relay(gen, first, usage, target)
            try:
                async for chunk in relay:
                    yield chunk
            finally:
                await relay.aclose()  # a client gone mid-stream closes the upstream and meters what was sent
            return
        error = error_for(last_exc)
        await self.fail(error, last_target, depth)
        raise error

    async def _hung_up(self, target: Any, depth: int) -> None:
        """Meter a call whose client hung up before anything came back: the prompt, estimated."""
        usage = new_usage(self.ctx, self.route, target, self.variant)
        usage.fallback_depth = depth
        usage.status, usage.http_status, usage.tokens_estimated = "client_closed", 499, True
        usage.input_tokens = estimate_tokens(prompt_chars(self.body))
        await self.finish(usage, target)

    async def _upstream(self, work: Awaitable[Any]) -> Any:
        """Await the provider (a reply, or a stream's next chunk): the only await the gateway may cancel."""
        self.awaiting_upstream = True
        try:
            return await work
        finally:
            self.awaiting_upstream = False

    async def _relay(self, gen: Any, first: dict | None, usage: Usage, target: Any) -> AsyncIterator[dict]:
        from .providers import ProviderError

        delivered_chars = 0
        got_usage = False
        completed = False
        try:
            chunk = first
            while chunk is not None:
                if chunk.get("usage"):
                    usage_from(usage, chunk["usage"])
                    got_usage = True
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if content:
                        delivered_chars += len(content)
                yield chunk
                try:
                    chunk = await self._upstream(gen.__anext__())
                except StopAsyncIteration:
                    chunk = None
            completed = True
        except ProviderError as exc:
            usage.status = "error"
            usage.error_kind = exc.kind
            usage.http_status = 502
            raise
        finally:
            if not completed:
                await gen.aclose()
                if usage.status == "ok":
                    usage.status = "client_closed"
                    usage.http_status = 499
            if not got_usage:
                usage.input_tokens = usage.input_tokens or estimate_tokens(prompt_chars(self.body))
                usage.output_tokens = estimate_tokens(delivered_chars) if delivered_chars else 0
                usage.tokens_estimated = True
            await self.finish(usage, target)


def _record_unadmitted(usage: Usage) -> None:
    from .metering import record_now

    record_now(usage)

