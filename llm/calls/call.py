"""The router: admits a call against caps and limits, tries the route's targets with failover and a shared
circuit breaker, meters the outcome exactly once. Used by the gateway and by Celery tasks alike."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar, cast

from django.conf import settings
from django.db import DatabaseError

from llm.calls.admission import CallContext, admit, limits_for
from llm.calls.circuit import circuit_id, record_failure
from llm.calls.errors import GatewayError, error_for
from llm.calls.response_cache import cache_get, cache_key, cache_put, is_deterministic
from llm.limits import budget
from llm.metering import metrics
from llm.metering.pricing import Usage, estimate_tokens, prompt_chars, reported_cost
from llm.metering.queue import record_now
from llm.providers import ProviderError, Target, Timeouts, get_adapter
from llm.providers.base import MESSAGES_PASSTHROUGH, RESPONSES_PASSTHROUGH, speaks_responses
from llm.sync import run_sync

if TYPE_CHECKING:
    from llm.calls.resolution import ResolvedRoute, ResolvedTarget

log = logging.getLogger(__name__)

T = TypeVar("T")


FAILOVER_KINDS = {"rate_limit", "timeout", "unavailable"}


def order_targets(route: ResolvedRoute) -> tuple[list[ResolvedTarget], str]:
    """Primary first (a weighted draw on A/B routes), then the rest in order; returns the variant drawn."""
    targets = list(route.targets)
    if not route.weighted or len(targets) < 2:
        return targets, ""
    weighted = [t for t in targets if t.weight > 0]
    pick = random.choices(weighted, weights=[t.weight for t in weighted])[0]
    return [pick] + [t for t in targets if t is not pick], pick.model_id


def provider_target(target: ResolvedTarget) -> Target:
    return Target(
        provider=target.provider,
        protocol=target.protocol,
        base_url=target.base_url,
        api_key=target.api_key,
        model=target.upstream_model,
        options=target.options,
        timeouts=Timeouts(
            connect=settings.LLM_CONNECT_TIMEOUT,
            first_byte=settings.LLM_FIRST_BYTE_TIMEOUT,
            idle=settings.LLM_IDLE_TIMEOUT,
        ),
    )


def upstream_body(body: dict, target: ResolvedTarget) -> dict:
    """The request with the route's defaults filled in where the client left them out (and a Messages request's
    original, `MESSAGES_PASSTHROUGH`, only for a target that speaks Anthropic)."""
    if MESSAGES_PASSTHROUGH in body and target.protocol != "anthropic":
        body = {k: v for k, v in body.items() if k != MESSAGES_PASSTHROUGH}
    if RESPONSES_PASSTHROUGH in body and not speaks_responses(target.provider, target.protocol):
        body = {k: v for k, v in body.items() if k != RESPONSES_PASSTHROUGH}
    params = target.params or {}
    if not params:
        return body
    merged = dict(body)
    for name in ("temperature", "max_tokens"):
        if (
            name in params
            and name not in merged
            and not (name == "max_tokens" and "max_completion_tokens" in merged)
        ):
            merged[name] = params[name]
    return merged


def _should_fail_over(exc: ProviderError, target: ResolvedTarget) -> bool:
    return exc.kind in FAILOVER_KINDS or (exc.kind == "auth" and target.mode == "platform")


def new_usage(ctx: CallContext, route: ResolvedRoute, target: ResolvedTarget, variant: str) -> Usage:
    return Usage(
        request_id=ctx.request_id,
        tenant_id=ctx.tenant_id,
        request_type=ctx.request_type,
        api_key_id=ctx.api_key_id,
        agent_id=ctx.agent_id,
        user_id=ctx.user_id,
        mode=target.mode,
        provider=target.provider,
        model=target.model_id,
        tier=target.tier or "",
        route=route.name[:100],
        variant=variant,
    )


_MAX_TOKENS_PER_CALL = 2**31 - 1


def _count(value: object) -> int:
    """A token count as the provider reported it, made a sane integer (odd answers never break metering)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    return min(max(int(value), 0), _MAX_TOKENS_PER_CALL)


def _detail(details: object, name: str, most: int) -> int:
    return min(_count(details.get(name)), most) if isinstance(details, dict) else 0


def usage_from(usage: Usage, upstream_usage: object) -> None:
    """Take the provider's usage block, bounded; the block is rewritten in place so the client is shown exactly
    what was metered, in OpenAI's shape (a reported `cost` is taken out: it prices the call, see Usage.price).

    Cache reads and writes are parts of the prompt and reasoning a part of the completion, never more than it."""
    if not isinstance(upstream_usage, dict) or not upstream_usage:
        return
    if "cost" in upstream_usage:
        usage.reported_cost_usd = reported_cost(upstream_usage.pop("cost"))
    usage.input_tokens = _count(upstream_usage.get("prompt_tokens"))
    usage.output_tokens = _count(upstream_usage.get("completion_tokens"))
    details = upstream_usage.get("prompt_tokens_details")
    usage.cached_tokens = _detail(details, "cached_tokens", usage.input_tokens)
    usage.cache_write_tokens = _detail(
        details, "cache_write_tokens", usage.input_tokens - usage.cached_tokens
    )
    usage.cache_write_1h_tokens = _detail(details, "cache_write_1h_tokens", usage.cache_write_tokens)
    completion_details = upstream_usage.get("completion_tokens_details")
    usage.reasoning_tokens = _detail(completion_details, "reasoning_tokens", usage.output_tokens)
    upstream_usage["prompt_tokens"] = usage.input_tokens
    upstream_usage["completion_tokens"] = usage.output_tokens
    upstream_usage["total_tokens"] = usage.input_tokens + usage.output_tokens
    if isinstance(details, dict):
        for name, value in (
            ("cached_tokens", usage.cached_tokens),
            ("cache_write_tokens", usage.cache_write_tokens),
            ("cache_write_1h_tokens", usage.cache_write_1h_tokens),
        ):
            if name in details:
                details[name] = value
    if isinstance(completion_details, dict) and "reasoning_tokens" in completion_details:
        completion_details["reasoning_tokens"] = usage.reasoning_tokens


def _unexpected(target: ResolvedTarget, exc: BaseException) -> ProviderError:
    """An adapter failed in a way it did not map (odd upstream JSON, a bug): a ProviderError like any other, so
    the call fails over or ends cleanly, and is settled."""
    return ProviderError(
        "unavailable",
        f"{target.provider} sent an answer the gateway could not read",
        provider=target.provider,
    )


class Call:
    """One admitted call: tries targets, then settles the reservation and queues exactly one UsageEvent."""

    def __init__(self, ctx: CallContext, route: ResolvedRoute, body: dict, *, embeddings: bool = False):
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
        self.answered: tuple[Usage, ResolvedTarget] | None = None
        self.markup: Decimal | None = None
        # After a target said the request does not fit its context window: that window (0: not known). Only a
        # target with a larger (or unknown) one is tried next.
        self.outgrown: int | None = None

    def _check_prices(self) -> None:
        for t in self.targets[:1]:
            if t.mode in ("platform", "byok") and (
                t.input_usd_per_mtok is None or t.output_usd_per_mtok is None
            ):
                raise GatewayError(
                    400,
                    f"The model {t.model_id} has no known price, so it cannot be metered; "
                    "ask an admin to add it to the catalog or pick a catalog model.",
                    code="model_price_unknown",
                    param="model",
                )

    async def start(self) -> None:
        self._check_prices()
        self.reservation, self.open_circuits = await admit(
            self.ctx, self.body, self.targets, embeddings=self.embeddings
        )
        # What settling needs from the limits (the markup) is taken now: finish() must never look anything up,
        # or a store that went away during the call would leave it unsettled.
        self.markup = (await limits_for(self.ctx.tenant_id)).markup

    def _candidates(self) -> list[tuple[int, ResolvedTarget]]:
        indexed = list(enumerate(self.targets))
        usable = [(i, t) for i, t in indexed if circuit_id(t) not in self.open_circuits]
        return usable or indexed[:1]  # every breaker open: still try the primary rather than fail blind

    def _fits(self, target: ResolvedTarget) -> bool:
        """Whether a target may take a request that did not fit an earlier target's context window."""
        return self.outgrown is None or target.context_length is None or target.context_length > self.outgrown

    async def _moves_on(self, exc: ProviderError, target: ResolvedTarget) -> bool:
        """Whether a failure of this target moves on to the next one: rate limits, timeouts and outages (a breaker
        counts them), a context window too small (to a larger one), a content policy refusal where the route says
        so (`fallback_on`). Anything else is the request's own fault and is answered at once."""
        if exc.kind == "context_length":
            self.outgrown = max(self.outgrown or 0, target.context_length or 0)
            return True
        if exc.kind == "content_policy":
            return "content_policy" in self.route.fallback_on
        if _should_fail_over(exc, target):
            await record_failure(target)
            return True
        return False

    def _final_error(self, exc: ProviderError, target: ResolvedTarget | None) -> GatewayError:
        error = error_for(exc)
        if exc.kind == "context_length" and target is not None:
            window = f" ({target.context_length:,} tokens)" if target.context_length else ""
            others = "; no other target of this route has a larger one" if len(self.targets) > 1 else ""
            error.message = (
                f"The request does not fit the context window of {target.model_id}{window}{others}. "
                f"Shorten it or route it to a model with a larger window. ({exc.message})"
            )
        return error

    async def finish(self, usage: Usage, target: ResolvedTarget | None) -> None:
        """Price the usage, settle the reservation and queue the event (durable before the reply ends)."""
        if self.finished:
            return
        self.finished = True
        usage.latency_ms = int((time.perf_counter() - self.ctx.started) * 1000)
        self.usage = usage
        failed = False
        try:
            if target is not None:
                usage.price(
                    target.input_usd_per_mtok,
                    target.output_usd_per_mtok,
                    self.markup,
                    cost_reported=target.cost_reported,
                    cache_read_price=target.cache_read_usd_per_mtok,
                    cache_write_price=target.cache_write_usd_per_mtok,
                )
            metrics.observe(usage)
        except Exception:  # a bug of ours must not cost the settlement: settle, then answer internal_error
            log.exception(
                "pricing or metrics failed for %s; settling the call as an internal error",
                self.ctx.request_id,
            )
            usage.status, usage.error_kind, usage.http_status = "error", "internal", 500
            failed = True
        if self.reservation is None:
            await run_sync(_record_unadmitted, usage)
        else:
            try:
                await budget.backend().asettle(self.reservation, usage.tcu, usage.to_json(), usage.mode)
            except budget.BackendUnavailable:
                await _settle_later(self.reservation, usage)
        if failed:
            raise GatewayError(
                500,
                "Internal error in the gateway; the request id identifies it in our logs.",
                type="api_error",
                code="internal_error",
                error_kind="internal",
            )

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
        await self.fail(
            GatewayError(
                500, "internal error", type="api_error", code="internal_error", error_kind="internal"
            ),
            None,
        )

    async def fail(self, error: GatewayError, target: ResolvedTarget | None, depth: int = 0) -> None:
        t = target or (self.targets[0] if self.targets else None)
        usage = (
            new_usage(self.ctx, self.route, t, self.variant)
            if t is not None
            else Usage(
                request_id=self.ctx.request_id,
                tenant_id=self.ctx.tenant_id,
                request_type=self.ctx.request_type,
            )
        )
        usage.status = "error"
        usage.error_kind = error.error_kind
        usage.http_status = error.status
        usage.fallback_depth = depth
        await self.finish(usage, None)

    async def complete(self, call_kind: str = "chat") -> dict:
        """Non-streamed chat or embeddings: returns the OpenAI-shaped body."""
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
        last_exc: ProviderError | None = None
        last_target: ResolvedTarget | None = None
        depth = 0
        for depth, target in self._candidates():
            if not self._fits(target):
                continue
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
                if await self._moves_on(exc, target):
                    continue
                break
            except Exception as exc:
                log.error("unexpected failure calling %s", target.provider, exc_info=True)
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
        # A route has at least one target, so the loop ran and every way out of it but `return` set last_exc.
        error = self._final_error(cast("ProviderError", last_exc), last_target)
        await self.fail(error, last_target, depth)
        raise error

    async def stream(self) -> AsyncGenerator[dict, None]:
        """Streamed chat: failover only before the first chunk; yields OpenAI chunks ending with usage."""
        last_exc: ProviderError | None = None
        last_target: ResolvedTarget | None = None
        depth = 0
        for depth, target in self._candidates():
            if not self._fits(target):
                continue
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
                if await self._moves_on(exc, target):
                    continue
                break
            except Exception as exc:
                log.error("unexpected failure calling %s", target.provider, exc_info=True)
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
        # A route has at least one target, so the loop ran and every way out of it but `return` set last_exc.
        error = self._final_error(cast("ProviderError", last_exc), last_target)
        await self.fail(error, last_target, depth)
        raise error

    async def _hung_up(self, target: ResolvedTarget, depth: int) -> None:
        """Meter a call whose client hung up before anything came back: the prompt, estimated."""
        usage = new_usage(self.ctx, self.route, target, self.variant)
        usage.fallback_depth = depth
        usage.status, usage.http_status, usage.tokens_estimated = "client_closed", 499, True
        usage.input_tokens = estimate_tokens(prompt_chars(self.body))
        await self.finish(usage, target)

    async def _upstream(self, work: Awaitable[T]) -> T:
        """Await the provider (a reply, or a stream's next chunk): the only await the gateway may cancel."""
        self.awaiting_upstream = True
        try:
            return await work
        finally:
            self.awaiting_upstream = False

    async def _relay(
        self, gen: AsyncGenerator[dict, None], first: dict | None, usage: Usage, target: ResolvedTarget
    ) -> AsyncGenerator[dict, None]:
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
        except (
            Exception
        ) as exc:  # an adapter choking mid-stream: metered, then told to the client as an error
            log.error("unexpected failure in a stream from %s", target.provider, exc_info=True)
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


async def _aclose_quietly(gen: AsyncGenerator[dict, None]) -> None:
    try:
        await gen.aclose()
    except Exception:
        log.debug("upstream stream did not close cleanly", exc_info=True)


def _record_unadmitted(usage: Usage) -> None:
    record_now(usage)


# Settlements that could not reach Redis: the event went straight to PostgreSQL, the counters are released when
# Redis answers again (the drain loop retries). A reservation left there would otherwise hold budget for 10 min.
_unsettled: list[tuple[budget.Reservation, int, str, float]] = []


async def _settle_later(reservation: budget.Reservation, usage: Usage) -> None:
    try:
        await run_sync(_record_unadmitted, usage)
    except DatabaseError:
        log.error(
            "usage event could not be stored (metering store and database unreachable): %s",
            usage.to_json().decode(),
        )
        raise GatewayError(
            503,
            "The gateway could not record this call's usage, so it is not delivered; retry shortly.",
            type="api_error",
            code="service_unavailable",
            retry_after=2,
        ) from None
    _unsettled.append((reservation, usage.tcu, usage.mode, time.monotonic()))


def retry_unsettled() -> int:
    """Release the counters of calls settled while Redis was unreachable (events are stored already)."""
    done = 0
    cutoff = time.monotonic() - budget.RESERVED_TTL
    while _unsettled:
        reservation, actual, mode, at = _unsettled[0]
        if at >= cutoff:
            try:
                budget.backend().settle(reservation, actual, None, mode)
            except budget.BackendUnavailable:
                return done
        _unsettled.pop(0)
        done += 1
    return done
