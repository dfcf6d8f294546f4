"""The OpenAI-compatible gateway (`/v1/*`) as a lean ASGI app, routed in asgi.py ahead of Django's handler.

It uses Django's settings, ORM and cache, but not its request cycle: auth, limits and routes come from
short-lived in-process caches, admission is one Redis round trip, and the only write is the usage event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from asgiref.sync import sync_to_async

from . import gateway_cache
from .router import Call, CallContext, GatewayError

log = logging.getLogger(__name__)

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]
_MAX_BODY = 20 * 1024 * 1024


class ClientGone(Exception):
    """The client closed the connection."""


async def _read_body(receive: Any) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise GatewayError(413, "Request body too large (limit 20 MB).")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes, request_id: str, extra: list | None = None) -> None:
    headers = [_JSON, (b"x-request-id", request_id.encode()), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Any, exc: GatewayError, request_id: str) -> None:
    extra = [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after else None
    await _respond(send, exc.status, exc.body(), request_id, extra)


def _bearer(scope: dict) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
            return ""
    return ""


async def authenticate(scope: dict) -> Any:
    from tenants.keys import key_info

    raw = _bearer(scope)
    if not raw:
        raise GatewayError(401, "Missing API key: send `Authorization: Bearer byok-…`.",
                           type="invalid_request_error", code="invalid_api_key")
    info = gateway_cache.keys.get(raw)
    if info is None:
        info = await sync_to_async(key_info)(raw)
        if info is not None:
            gateway_cache.keys.set(raw, info)
    if info is None or not info.is_valid():
        raise GatewayError(401, "Invalid, revoked or expired API key.", type="invalid_request_error",
                           code="invalid_api_key")
    if "gateway" not in info.scopes:
        raise GatewayError(401, "This API key lacks the `gateway` scope needed for /v1.",
                           type="invalid_request_error", code="invalid_api_key")
    _touch(info.id)
    return info


_last_touch: dict[int, float] = {}


def _touch(key_id: int) -> None:
    """Mark the key used at most once a minute per process, off the request path."""
    now = time.monotonic()
    if now - _last_touch.get(key_id, 0) < 60:
        return
    _last_touch[key_id] = now
    task = asyncio.get_running_loop().run_in_executor(None, _touch_in_thread, key_id)
    task.add_done_callback(_log_failure)


def _touch_in_thread(key_id: int) -> None:
    from django.db import connections

    from tenants.keys import touch_last_used

    try:
        touch_last_used(key_id)
    finally:
        connections.close_all()  # a pool thread must not keep a connection of its own


def _log_failure(future: Any) -> None:
    if future.exception() is not None:
        log.warning("last_used update failed: %s", future.exception().__class__.__name__)


def _context(info: Any, request_type: str) -> CallContext:
    from . import metrics

    metrics.remember_tenant(info.tenant_id, info.tenant_slug)
    return CallContext(tenant_id=info.tenant_id, request_type=request_type, api_key_id=info.id,
                       key_spend_limit=info.spend_limit_tcu, agent_id=info.agent_id)


def _parse_json(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    return body


def validate_chat(body: dict) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "`model` is required (e.g. `default`, `anthropic:claude-sonnet-4.5`, `route:chat`).",
                           param="model", code="missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "`messages` must be a non-empty list.", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise GatewayError(400, f"messages[{i}] needs a `role` of system, user, assistant or tool.",
                               param=f"messages[{i}].role")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
        raise GatewayError(400, "`temperature` must be a number from 0 to 2.", param="temperature")
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise GatewayError(400, f"`{name}` must be a positive integer.", param=name)


def _stream_wants_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def chat_completions(scope: dict, receive: Any, send: Any, ctx_holder: list) -> None:
    info = await authenticate(scope)
    body = _parse_json(await _read_body(receive))
    ctx = _context(info, "chat")
    ctx_holder.append(ctx)
    validate_chat(body)
    from .router import resolve

    route = await resolve(ctx, body["model"])
    call = Call(ctx, route, body)
    await call.start()
    if not body.get("stream"):
        result = await _unless_hung_up(receive, call, call.complete())
        extra = [(b"x-byok-cache", b"hit" if call.cache_hit else b"miss")] if route.cache_ttl else None
        await _respond(send, 200, orjson.dumps(result), ctx.request_id, extra)
        return
    await _stream(send, receive, call, ctx, _stream_wants_usage(body))


async def _unless_hung_up(receive: Any, call: Call, work: Any) -> Any:
    """Await a non-streamed call; a client that hangs up meanwhile cancels it (metered) and ends the request."""
    gone = asyncio.Event()
    this = asyncio.current_task()
    assert this is not None
    watcher = asyncio.create_task(_watch_disconnect(receive, gone, call, this))
    try:
        return await work
    except asyncio.CancelledError:
        if not gone.is_set():
            raise
        this.uncancel()
        raise ClientGone from None
    finally:
        watcher.cancel()


async def _watch_disconnect(receive: Any, gone: asyncio.Event, call: Call, task: asyncio.Task) -> None:
    """The body is read already, so the next message can only be the client hanging up. Then a call waiting for
    the provider is cancelled at once (the upstream request is closed and what was sent is metered), rather than
    when the provider answers or sends its next chunk, which can take long with a slow first token."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            if call.awaiting_upstream:
                task.cancel()
            return


async def _stream(send: Any, receive: Any, call: Call, ctx: CallContext, wants_usage: bool) -> None:
    rid = (b"x-request-id", ctx.request_id.encode())
    gen = call.stream()
    started = False
    gone = asyncio.Event()
    this = asyncio.current_task()
    assert this is not None
    watcher = asyncio.create_task(_watch_disconnect(receive, gone, call, this))
    try:
        async for chunk in gen:
            if gone.is_set():
                raise ClientGone
            if chunk.get("usage") and not chunk.get("choices"):
                if not wants_usage:
                    continue
            elif "usage" in chunk and not wants_usage:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
            if not started:
                await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, rid]})
                started = True
            try:
                await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                            "more_body": True})
            except Exception:
                raise ClientGone from None
    except GatewayError as exc:
        if not started:
            raise
        await _sse_error(send, exc)
        return
    except ClientGone:
        await gen.aclose()
        return
    except asyncio.CancelledError:
        if not gone.is_set():
            raise
        this.uncancel()  # our own cancel, for the hang-up: the call is metered, the request ends here
        await gen.aclose()
        return
    except Exception as exc:
        from .providers import ProviderError

        await gen.aclose()
        if not isinstance(exc, ProviderError) or not started:
            raise
        from .router import error_for

        await _sse_error(send, error_for(exc))
        return
    finally:
        watcher.cancel()
    if not started:
        await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, rid]})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _sse_error(send: Any, exc: GatewayError) -> None:
    """After the first byte the status is sent; an error travels as a final SSE event, as OpenAI does."""
    try:
        await send({"type": "http.response.body", "body": b"data: " + exc.body() + b"\n\n", "more_body": False})
    except Exception:
        log.debug("client gone before the stream error could be sent")


async def embeddings(scope: dict, receive: Any, send: Any, ctx_holder: list) -> None:
    info = await authenticate(scope)
    body = _parse_json(await _read_body(receive))
    ctx = _context(info, "embedding")
    ctx_holder.append(ctx)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "`model` is required.", param="model", code="missing_model")
    inp = body.get("input")
    if not (isinstance(inp, str) and inp) and not (isinstance(inp, list) and inp):
        raise GatewayError(400, "`input` must be a string or a non-empty list.", param="input")
    from .router import resolve

    route = await resolve(ctx, model, embeddings=True)
    call = Call(ctx, route, body, embeddings=True)
    await call.start()
    result = await _unless_hung_up(receive, call, call.complete("embeddings"))
    await _respond(send, 200, orjson.dumps(result), ctx.request_id)


async def list_models(scope: dict, receive: Any, send: Any, ctx_holder: list) -> None:
    info = await authenticate(scope)
    ctx = _context(info, "chat")
    ctx_holder.append(ctx)
    key = ("models", info.tenant_id, info.agent_id)
    data = gateway_cache.routes.get(key)
    if data is None:
        from .gateway_models import models_for_gateway

        data = await sync_to_async(models_for_gateway)(tenant_id=info.tenant_id, agent_id=info.agent_id)
        gateway_cache.routes.set(key, data)
    body = orjson.dumps({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": m.split(":", 1)[0]} for m in data]})
    await _respond(send, 200, body, ctx.request_id)


ROUTES = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): list_models,
}


async def app(scope: dict, receive: Any, send: Any) -> None:
    """ASGI entry for `/v1/*`."""
    import uuid

    handler = ROUTES.get((scope["method"], scope["path"].rstrip("/") or "/"))
    ctx_holder: list[CallContext] = []
    fallback_id = "req_" + uuid.uuid4().hex
    try:
        if handler is None:
            known = {p for _, p in ROUTES}
            if scope["path"].rstrip("/") in known:
                raise GatewayError(405, f"Method {scope['method']} is not allowed on {scope['path']}.")
            raise GatewayError(404, f"Unknown endpoint {scope['path']}; this gateway serves /v1/chat/completions, "
                               "/v1/embeddings and /v1/models.", code="unknown_url")
        await handler(scope, receive, send, ctx_holder)
    except GatewayError as exc:
        await _error(send, exc, ctx_holder[0].request_id if ctx_holder else fallback_id)
    except ClientGone:
        return
    except Exception:
        log.exception("gateway error")
        internal = GatewayError(500, "Internal error in the gateway; the request id identifies it in our logs.",
                                type="api_error", code="internal_error")
        try:
            await _error(send, internal, ctx_holder[0].request_id if ctx_holder else fallback_id)
        except Exception:
            log.debug("could not send the error response")


def _drain_in_thread() -> None:
    from django.db import connections

    from .metering import drain

    try:
        drain()
    finally:
        connections.close_all()


async def _drain_loop(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sync_to_async(_drain_in_thread, thread_sensitive=False)()
        except Exception:
            log.exception("usage drain failed; events stay queued")


async def lifespan(scope: dict, receive: Any, send: Any) -> None:
    """Start the usage drainer with the server; stop it (after a last drain) on shutdown."""
    from django.conf import settings

    task = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            task = asyncio.create_task(_drain_loop(settings.USAGE_DRAIN_INTERVAL))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if task is not None:
                task.cancel()
            try:
                await sync_to_async(_drain_in_thread, thread_sensitive=False)()
            except Exception:
                log.exception("final usage drain failed; events stay queued")
            from django.db import connections

            from .providers import aclose_clients

            await aclose_clients()  # close the pooled upstream connections cleanly
            await sync_to_async(connections.close_all)()
            await send({"type": "lifespan.shutdown.complete"})
            return
