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
import redis
from django.conf import settings
from django.db import DatabaseError

from . import budget, gateway_cache
from .metering import Usage, estimate_tokens, prompt_chars, tcu_of
from .policy import policy
from .sync import run_sync

log = logging.getLogger(__name__)

FAILOVER_KINDS = {"rate_limit", "timeout", "unavailable"}


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


def _load_limits(tenant_id: int) -> Any:
    return policy().limits_for(tenant_id)


def _load_agent_budget(tenant_id: int, agent_id: int) -> int | None:
    return policy().agent_budget_tcu(tenant_id, agent_id)


def hard_cap_message(used: int, cap: int, scope: str = "tenant") -> str:
    _, end = budget.period_bounds(budget.period_of())
    if scope == "tenant":
        return policy().hard_cap_message(used, cap, end)
    what = {"key": "This API key's monthly TCU limit", "agent": "This agent's monthly TCU budget"}.get(
        scope, "Monthly TCU limit")
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


# After a failed lookup the database is taken as down for a few seconds: warm tenants are served from what the
# process knows without each call waiting for a connect to time out first.
_DATABASE_RETRY_S = 5.0
_database_down_until = [0.0]


async def _cached(cache: gateway_cache.TTLCache, key: Any, load: Any, *args: Any, **kwargs: Any) -> Any:
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
        value = await run_sync(load, *args, **kwargs)
    except DatabaseError:
        _database_down_until[0] = time.monotonic() + _DATABASE_RETRY_S
        stale = cache.get_stale(key)
        if stale is None:
            raise GatewayError(503, "The gateway cannot reach its database right now; retry shortly.",
                               type="api_error", code="service_unavailable", retry_after=2) from None
        log.warning("database unreachable; serving a warm tenant from its last known settings")
        return stale
    except (redis.ConnectionError, redis.TimeoutError):
        raise GatewayError(503, "The gateway's metering store is unreachable, so calls are refused rather than run "
                           "unmetered; retry shortly.", type="api_error", code="service_unavailable",
                           retry_after=2) from None
    cache.set(key, value)
    return value


async def limits_for(tenant_id: int) -> Any:
    return await _cached(gateway_cache.limits, tenant_id, _load_limits, tenant_id)


def _agent_budget_boxed(tenant_id: int, agent_id: int) -> tuple[int | None]:
    return (_load_agent_budget(tenant_id, agent_id),)


async def agent_budget(tenant_id: int, agent_id: int | None) -> int | None:
    if agent_id is None:
        return None
    boxed = await _cached(gateway_cache.limits, ("agent-budget", tenant_id, agent_id), _agent_budget_boxed,
                          tenant_id, agent_id)
    return boxed[0]


async def resolve(ctx: CallContext, model: str, *, embeddings: bool = False) -> Any:
    from .resolution import RouteError, resolve_route

    try:
        return await _cached(gateway_cache.routes, (ctx.tenant_id, ctx.agent_id, model, embeddings), resolve_route,
                             tenant_id=ctx.tenant_id, agent_id=ctx.agent_id, model=model, embeddings=embeddings)
    except RouteError as exc:
        raise GatewayError(400, str(exc), code=getattr(exc, "code", "model_not_found"),
                           param=getattr(exc, "param", "model")) from None


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


def _worst_case_tcu(body: dict, target: Any, *, embeddings: bool = False) -> int:
    """The most this request can cost as sent: its prompt, and every completion (`n`) at its output limit (the
    model's maximum when the request names none), so one request can overshoot a cap by at most itself."""
    prompt = estimate_tokens(prompt_chars(body))
    in_p = target.input_usd_per_mtok or Decimal(0)
    out_p = target.output_usd_per_mtok or Decimal(0)
    if embeddings:
        return budget.clamp(tcu_of(Decimal(prompt) * in_p / Decimal(1_000_000)))
    max_out = body.get("max_completion_tokens") or body.get("max_tokens") or (target.params or {}).get("max_tokens") \
        or target.max_output_tokens or settings.DEFAULT_MAX_OUTPUT_TOKENS
    n = body.get("n")
    copies = n if isinstance(n, int) and n > 0 else 1
    outputs = Decimal(int(max_out)) * Decimal(copies)
    return budget.clamp(tcu_of((Decimal(prompt) * in_p + outputs * out_p) / Decimal(1_000_000)))


async def admit(ctx: CallContext, body: dict, targets: list[Any], *, embeddings: bool = False
                ) -> tuple[budget.Reservation, set[str]]:
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
        period = budget.period_of()
        _, period_end = budget.period_bounds(period)
        rates.append(budget.RateLimit("monthly", ctx.tenant_id, limits.monthly_request_cap, 31 * 24 * 3600,
                                      bucket=period, ttl=int(period_end.timestamp() - time.time()) + 3600))
    concurrency = (f"{budget.NS}:cc:{ctx.tenant_id}", limits.max_concurrency) if limits.max_concurrency else None
    circuits = [circuit_id(t) for t in targets]
    try:
        admission = await budget.backend().aadmit(
            scopes=scopes, rates=rates, concurrency=concurrency, amount=_worst_case_tcu(body, primary,
                                                                                         embeddings=embeddings),
            circuits=circuits, now=time.time())
    except budget.BackendUnavailable:
        raise GatewayError(503, "The gateway's metering store is unreachable, so calls are refused rather than run "
                           "unmetered; retry shortly.", type="api_error", code="service_unavailable",
                           retry_after=2) from None
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
    try:
        if await budget.backend().arecord_failure(circuit_id(target)):
            log.warning("circuit opened for %s %s", target.provider, target.upstream_model)
    except budget.BackendUnavailable:
        log.warning("circuit breaker not updated: the metering store is unreachable")


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


_MAX_TOKENS_PER_CALL = 2**31 - 1


def _count(value: Any) -> int:
    """A token count as the provider reported it, made a sane integer (odd answers never break metering)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    return min(max(int(value), 0), _MAX_TOKENS_PER_CALL)


def usage_from(usage: Usage, upstream_usage: Any) -> None:
    """Take the provider's usage block, bounded; the block is rewritten in place so the client is shown exactly
    what was metered."""
    if not isinstance(upstream_usage, dict) or not upstream_usage:
        return
    usage.input_tokens = _count(upstream_usage.get("prompt_tokens"))
    usage.output_tokens = _count(upstream_usage.get("completion_tokens"))
    details = upstream_usage.get("prompt_tokens_details")
    usage.cached_tokens = min(_count(details.get("cached_tokens")), usage.input_tokens) \
        if isinstance(details, dict) else 0
    upstream_usage["prompt_tokens"] = usage.input_tokens
    upstream_usage["completion_tokens"] = usage.output_tokens
    upstream_usage["total_tokens"] = usage.input_tokens + usage.output_tokens
    if isinstance(details, dict) and "cached_tokens" in details:
        details["cached_tokens"] = usage.cached_tokens


def is_deterministic(body: dict, target: Any) -> bool:
    """Only a request that must give the same answer twice may be answered from the cache."""
    temperature = body.get("temperature", (target.params or {}).get("temperature"))
    return not body.get("stream") and isinstance(temperature, int | float) and float(temperature) == 0 \
        and body.get("n") in (None, 1)


def cache_key(ctx: CallContext, route: Any, body: dict) -> str:
    digest = hashlib.sha256(orjson.dumps({k: v for k, v in body.items() if k != "user"},
                                         option=orjson.OPT_SORT_KEYS)).hexdigest()
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


def _unexpected(target: Any, exc: BaseException) -> Any:
    """An adapter failed in a way it did not map (odd upstream JSON, a bug): a ProviderError like any other, so
    the call fails over or ends cleanly, and is settled."""
    from .providers import ProviderError

    log.error("unexpected failure calling %s: %s", target.provider, exc.__class__.__name__, exc_info=exc)
    return ProviderError("unavailable", f"{target.provider} sent an answer the gateway could not read",
                         provider=target.provider)


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
        # The usage of an answer already received: if anything fails after it, abort() still meters it.
        self.answered: tuple[Usage, Any] | None = None
        self.markup: Any = None

    def _check_prices(self) -> None:
        for t in self.targets[:1]:
            if t.mode in ("platform", "byok") and (t.input_usd_per_mtok is None or t.output_usd_per_mtok is None):
                raise GatewayError(400, f"The model {t.model_id} has no known price, so it cannot be metered; "
                                   "ask an admin to add it to the catalog or pick a catalog model.",
                                   code="model_price_unknown", param="model")

    async def start(self) -> None:
        self._check_prices()
        self.reservation, self.open_circuits = await admit(self.ctx, self.body, self.targets,
                                                           embeddings=self.embeddings)
        # What settling needs from the limits (the markup) is taken now: finish() must never look anything up,
        # or a store that went away during the call would leave it unsettled.
        self.markup = (await limits_for(self.ctx.tenant_id)).markup

    def _candidates(self) -> list[tuple[int, Any]]:
        indexed = list(enumerate(self.targets))
        usable = [(i, t) for i, t in indexed if circuit_id(t) not in self.open_circuits]
        return usable or indexed[:1]  # every breaker open: still try the primary rather than fail blind

    async def finish(self, usage: Usage, target: Any | None) -> None:
        """Price the usage, settle the reservation and queue the event (durable before the reply ends)."""
        if self.finished:
            return
        self.finished = True
        if target is not None:
            usage.price(target.input_usd_per_mtok, target.output_usd_per_mtok, self.markup)
        usage.latency_ms = int((time.perf_counter() - self.ctx.started) * 1000)
        self.usage = usage
        from . import metrics

        metrics.observe(usage)
        if self.reservation is None:
            await run_sync(_record_unadmitted, usage)
            return
        try:
            await budget.backend().asettle(self.reservation, usage.tcu, usage.to_json())
        except budget.BackendUnavailable:
            await _settle_later(self.reservation, usage)

    async def abort(self, exc: BaseException | None = None) -> None:
        """Settle a call that ended in a way nothing else handled (an exception in our code or an adapter, a
        cancellation): exactly once, with what the provider already answered if it did."""
        if self.finished:
            return
        if self.answered is not None:
            usage, target = self.answered
            usage.status, usage.error_kind, usage.http_status = "error", "internal", 500
            await self.finish(usage, target)
            return
        await self.fail(GatewayError(500, "internal error", type="api_error", code="internal_error",
                                     error_kind="internal"), None)

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
                if not isinstance(result, dict):
                    raise TypeError(f"adapter answered {type(result).__name__}")
            except asyncio.CancelledError:  # the client hung up while the provider was working
                await self._hung_up(target, depth)
                raise
            except ProviderError as exc:
                last_exc, last_target = exc, target
                if _should_fail_over(exc, target):
                    await record_failure(target)
                    continue
                break
            except Exception as exc:
                last_exc, last_target = _unexpected(target, exc), target
                await record_failure(target)
                continue
            usage = new_usage(self.ctx, self.route, target, self.variant)
            usage.fallback_depth = depth
            self.answered = (usage, target)
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
            except Exception as exc:
                last_exc, last_target = _unexpected(target, exc), target
                await _aclose_quietly(gen)
                await record_failure(target)
                continue
            usage = new_usage(self.ctx, self.route, target, self.variant)
            usage.fallback_depth = depth
            self.answered = (usage, target)
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
                if not isinstance(chunk, dict):
                    raise TypeError(f"adapter yielded {type(chunk).__name__}")
                if chunk.get("usage"):
                    usage_from(usage, chunk["usage"])
                    got_usage = True
                choices = chunk.get("choices")
                for choice in choices if isinstance(choices, list) else ():
                    delta = choice.get("delta") if isinstance(choice, dict) else None
                    content = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(content, str):
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
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except Exception as exc:  # an adapter choking mid-stream: metered, then told to the client as an error
            usage.status, usage.http_status = "error", 502
            failure = _unexpected(target, exc)
            usage.error_kind = failure.kind
            raise failure from None
        finally:
            if not completed:
                await _aclose_quietly(gen)
                if usage.status == "ok":
                    usage.status = "client_closed"
                    usage.http_status = 499
            if not got_usage:
                usage.input_tokens = usage.input_tokens or estimate_tokens(prompt_chars(self.body))
                usage.output_tokens = estimate_tokens(delivered_chars) if delivered_chars else 0
                usage.tokens_estimated = True
            await self.finish(usage, target)


async def _aclose_quietly(gen: Any) -> None:
    try:
        await gen.aclose()
    except Exception:
        log.debug("upstream stream did not close cleanly", exc_info=True)


def _record_unadmitted(usage: Usage) -> None:
    from .metering import record_now

    record_now(usage)


# Settlements that could not reach Redis: the event went straight to PostgreSQL, the counters are released when
# Redis answers again (the drain loop retries). A reservation left there would otherwise hold budget for 10 min.
_unsettled: list[tuple[budget.Reservation, int, float]] = []


async def _settle_later(reservation: budget.Reservation, usage: Usage) -> None:
    try:
        await run_sync(_record_unadmitted, usage)
    except DatabaseError:
        log.error("usage event could not be stored (metering store and database unreachable): %s",
                  usage.to_json().decode())
        raise GatewayError(503, "The gateway could not record this call's usage, so it is not delivered; "
                           "retry shortly.", type="api_error", code="service_unavailable", retry_after=2) from None
    _unsettled.append((reservation, usage.tcu, time.monotonic()))


def retry_unsettled() -> int:
    """Release the counters of calls settled while Redis was unreachable (events are stored already)."""
    done = 0
    cutoff = time.monotonic() - budget.RESERVED_TTL
    while _unsettled:
        reservation, actual, at = _unsettled[0]
        if at >= cutoff:
            try:
                budget.backend().settle(reservation, actual, None)
            except budget.BackendUnavailable:
                return done
        _unsettled.pop(0)
        done += 1
    return done

