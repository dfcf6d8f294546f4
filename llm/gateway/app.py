"""The OpenAI-compatible gateway (`/v1/*`) as a lean ASGI app, routed in asgi.py ahead of Django's handler.

It uses Django's settings, ORM and cache, but not its request cycle: auth, limits and routes come from
short-lived in-process caches, admission is one Redis round trip, and the only write is the usage event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar, cast
from urllib.parse import parse_qs

import orjson
from django.conf import settings
from django.db import connections

from llm import sync
from llm.calls import hot_cache
from llm.calls.admission import CallContext, _cached, resolve
from llm.calls.call import Call, provider_target, retry_unsettled
from llm.calls.checks import check_chat, check_embeddings
from llm.calls.errors import GatewayError, error_for
from llm.calls.listing import models_for_gateway
from llm.gateway import anthropic_messages as am
from llm.gateway import responses_api as ra
from llm.metering import metrics
from llm.metering.pricing import estimate_tokens, prompt_chars
from llm.metering.queue import drain
from llm.providers import ProviderError, aclose_clients
from llm.providers import anthropic as anthropic_adapter
from llm.providers.base import MESSAGES_PASSTHROUGH, NATIVE_EVENT, RESPONSES_PASSTHROUGH
from llm.runtime import responses_store
from llm.sync import pool, run_sync
from tenants.allowlist import allows
from tenants.keys import KEY_PREFIX, KeyInfo, hash_key, key_info_by_hash, touch_last_used

if TYPE_CHECKING:
    from asgiref.typing import (
        HTTPDisconnectEvent,
        HTTPRequestEvent,
        HTTPScope,
        LifespanScope,
        LifespanShutdownEvent,
        LifespanStartupEvent,
    )

    Receive = Callable[[], Awaitable[HTTPRequestEvent | HTTPDisconnectEvent]]
    LifespanReceive = Callable[[], Awaitable[LifespanStartupEvent | LifespanShutdownEvent]]
    # asgiref's event types would have every response start carry `trailers`; the servers read what is sent by key.
    Send = Callable[[Mapping[str, object]], Awaitable[None]]

log = logging.getLogger(__name__)

T = TypeVar("T")

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_MAX_BODY = 20 * 1024 * 1024


class ClientGone(Exception):
    """The client closed the connection."""


async def _read_body(receive: Receive) -> bytes:
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


def dumps(value: object) -> bytes:
    """orjson, or the standard library for what orjson refuses (integers beyond 64 bits a provider sent)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, default=str).encode()


async def _respond(
    send: Send, status: int, body: bytes, request_id: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [_JSON, (b"x-request-id", request_id.encode()), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, exc: GatewayError, request_id: str, *, anthropic: bool = False) -> None:
    extra = [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after else None
    body = am.error_body(exc) if anthropic else exc.body()
    await _respond(send, exc.status, body, request_id, extra)


def presented_key(scope: HTTPScope) -> str:
    """The API key as the major SDKs send it: `Authorization: Bearer` (OpenAI), `x-api-key` (Anthropic, Claude
    Code) or `api-key` (Azure-style clients); all go through the same checks."""
    found = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            return text[7:].strip() if text[:7].lower() == "bearer " else ""
        if name in (b"x-api-key", b"api-key") and not found:
            found = value.decode("latin-1").strip()
    return found


class _Unknown:
    """Remembered for a key that does not exist, so repeating it costs no query."""

    def is_valid(self) -> bool:
        return False


_UNKNOWN = _Unknown()


async def authenticate(scope: HTTPScope) -> KeyInfo:

    raw = presented_key(scope)
    if not raw:
        raise GatewayError(
            401,
            "Missing API key: send `Authorization: Bearer byok-…`.",
            type="invalid_request_error",
            code="invalid_api_key",
        )
    info: KeyInfo | _Unknown | None = None
    if raw.startswith(KEY_PREFIX) and len(raw) <= 200:
        key_hash = hash_key(raw)
        info = hot_cache.keys.get(key_hash)
        if info is None:
            info = await _cached(hot_cache.keys, key_hash, _lookup_key, key_hash)
            if info is _UNKNOWN:
                hot_cache.keys.set(key_hash, _UNKNOWN, hot_cache.UNKNOWN_KEY_TTL)
    if info is None or not info.is_valid():
        raise GatewayError(
            401, "Invalid, revoked or expired API key.", type="invalid_request_error", code="invalid_api_key"
        )
    info = cast("KeyInfo", info)  # _UNKNOWN is never valid
    if "gateway" not in info.scopes:
        raise GatewayError(
            401,
            "This API key lacks the `gateway` scope needed for /v1.",
            type="invalid_request_error",
            code="invalid_api_key",
        )
    _touch(info.id)
    return info


def _lookup_key(key_hash: str) -> KeyInfo | _Unknown:

    return key_info_by_hash(key_hash) or _UNKNOWN


_last_touch: dict[int, float] = {}


def _touch(key_id: int) -> None:
    """Mark the key used at most once a minute per process, off the request path."""
    now = time.monotonic()
    if now - _last_touch.get(key_id, 0) < 60:
        return
    _last_touch[key_id] = now
    task = asyncio.get_running_loop().run_in_executor(pool(), _touch_in_thread, key_id)
    task.add_done_callback(_log_failure)


def _touch_in_thread(key_id: int) -> None:

    try:
        touch_last_used(key_id)
    finally:
        connections.close_all()


def _log_failure(future: asyncio.Future[None]) -> None:
    if future.exception() is not None:
        log.warning("last_used update failed: %s", future.exception().__class__.__name__)


def _context(info: KeyInfo, request_type: str) -> CallContext:

    metrics.remember_tenant(info.tenant_id, info.tenant_slug)
    return CallContext(
        tenant_id=info.tenant_id,
        request_type=request_type,
        api_key_id=info.id,
        key_spend_limit=info.spend_limit_tcu,
        agent_id=info.agent_id,
        key_allowed_models=info.allowed_models,
        agent_allowed_models=info.agent_allowed_models,
    )


def _parse_json(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    return body


def _stream_wants_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


class Exchange:
    """One `/v1` request as the entry point sees it: its context and call, so that whatever ends the request,
    an admitted call is settled exactly once (see `app`)."""

    __slots__ = ("anthropic", "call", "ctx")

    def __init__(self) -> None:
        self.ctx: CallContext | None = None
        self.call: Call | None = None
        self.anthropic = False  # errors in Anthropic's shape (the Messages ingress)


async def chat_completions(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    info = await authenticate(scope)
    body = _parse_json(await _read_body(receive))
    body.pop(MESSAGES_PASSTHROUGH, None)  # only the Messages and Responses ingresses set these
    body.pop(RESPONSES_PASSTHROUGH, None)
    ctx = ex.ctx = _context(info, "chat")
    check_chat(body)

    route = await resolve(ctx, body["model"])
    call = ex.call = Call(ctx, route, body)
    await call.start()
    if not body.get("stream"):
        result = await _unless_hung_up(receive, call, call.complete())
        extra = [(b"x-byok-cache", b"hit" if call.cache_hit else b"miss")] if route.cache_ttl else None
        await _respond(send, 200, dumps(result), ctx.request_id, extra)
        return
    await _stream(receive, call, _SSE(send, ctx.request_id, _stream_wants_usage(body)))


async def _unless_hung_up(receive: Receive, call: Call, work: Awaitable[T]) -> T:
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


async def _watch_disconnect(receive: Receive, gone: asyncio.Event, call: Call, task: asyncio.Task) -> None:
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


def _for_client(chunk: dict, wants_usage: bool) -> dict | None:
    """What the client gets of a chunk: usage only when it asked (`stream_options.include_usage`)."""
    if wants_usage or "usage" not in chunk:
        return chunk
    if chunk.get("usage") and not chunk.get("choices"):
        return None  # the usage-only chunk the client did not ask for
    return {k: v for k, v in chunk.items() if k != "usage"}


class _SSE:
    """The response side of an OpenAI stream: starts the response on the first event, knows whether it started;
    a failure after the start travels as the stream's last event."""

    __slots__ = ("headers", "send", "started", "wants_usage")

    def __init__(self, send: Send, request_id: str, wants_usage: bool = False) -> None:
        self.send = send
        self.headers = [*_SSE_HEADERS, (b"x-request-id", request_id.encode())]
        self.started = False
        self.wants_usage = wants_usage

    async def start(self) -> None:
        if not self.started:
            await self.send({"type": "http.response.start", "status": 200, "headers": self.headers})
            self.started = True

    async def write(self, data: bytes) -> None:
        await self.start()
        try:
            await self.send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception:  # the server's way of saying the client left varies (OSError, RuntimeError…)
            log.debug("stream send failed: the client is gone", exc_info=True)
            raise ClientGone from None

    async def event(self, chunk: dict) -> None:
        out = _for_client(chunk, self.wants_usage)
        if out is not None:
            await self.write(b"data: " + dumps(out) + b"\n\n")

    async def done(self) -> None:
        await self.start()
        await self.send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    def error_bytes(self, exc: GatewayError) -> bytes:
        return b"data: " + exc.body() + b"\n\n"

    async def error(self, exc: GatewayError) -> None:
        """After the first byte the status is sent; an error travels as a final SSE event, as OpenAI does."""
        try:
            await self.send({"type": "http.response.body", "body": self.error_bytes(exc), "more_body": False})
        except Exception:
            log.debug("client gone before the stream error could be sent", exc_info=True)


class _MessagesSSE(_SSE):
    """The response side of a Messages stream: Anthropic's events, relayed as Anthropic sent them when it served
    the call, else translated from the router's OpenAI chunks."""

    __slots__ = ("native", "translator")

    def __init__(self, send: Send, request_id: str, requested: str) -> None:
        super().__init__(send, request_id)
        self.translator = am.StreamTranslator(requested)
        self.native: bool | None = None  # decided by the first chunk (failover happens only before it)

    async def event(self, chunk: dict) -> None:
        raw = chunk.get(NATIVE_EVENT)
        if self.native is None:
            self.native = raw is not None
        if self.native:
            if raw is not None:
                kind, data = raw
                await self.write(am.sse(kind, data.encode() if isinstance(data, str) else data))
            return
        events = self.translator.feed(chunk)
        if events:
            await self.write(b"".join(am.sse(kind, payload) for kind, payload in events))

    async def done(self) -> None:
        await self.start()
        tail = b"" if self.native else b"".join(am.sse(k, p) for k, p in self.translator.finish())
        await self.send({"type": "http.response.body", "body": tail, "more_body": False})

    def error_bytes(self, exc: GatewayError) -> bytes:
        return am.error_event(exc)


class _ResponsesSSE(_SSE):
    """The response side of a Responses stream: the Responses events, then the answer stored (`store`)."""

    __slots__ = ("final", "native", "saved", "translator")

    def __init__(self, send: Send, request_id: str, translator: ra.StreamTranslator, saved: _Saver) -> None:
        super().__init__(send, request_id)
        self.translator = translator
        self.saved = saved
        self.native: bool | None = None  # OpenAI's own events, relayed (decided by the first chunk)
        self.final: dict | None = None

    async def event(self, chunk: dict) -> None:
        raw = chunk.get(NATIVE_EVENT)
        if self.native is None:
            self.native = raw is not None
        if self.native:
            if raw is not None:
                await self._relay(*raw)
            return
        events = [] if self.started else self.translator.start()
        events += self.translator.feed(chunk)
        if events:
            await self.write(b"".join(ra.sse(kind, payload) for kind, payload in events))

    async def _relay(self, kind: str, payload: dict) -> None:
        """OpenAI's event as it sent it, its Response under the gateway's id; the completed one is kept."""
        if isinstance(payload.get("response"), dict):
            t = self.translator
            payload = {**payload, "response": ra.ours(t.response_id, t.request, payload["response"])}
            if kind == "response.completed":
                self.final = payload["response"]
        await self.write(ra.sse(kind, payload))

    async def done(self) -> None:
        if self.native and self.final is not None:
            output = self.final.get("output") or []
            assistant = ra.assistant_of(output)
            await self.saved(self.final, assistant)
            await self.start()
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        events, final, assistant = self.translator.finish()
        await self.saved(final, assistant)
        await self.start()
        body = b"".join(ra.sse(kind, payload) for kind, payload in events)
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    def error_bytes(self, exc: GatewayError) -> bytes:
        return b"".join(ra.sse(kind, payload) for kind, payload in self.translator.failed(exc))


async def _stream(receive: Receive, call: Call, sse: _SSE) -> None:
    gen = call.stream()
    gone = asyncio.Event()
    this = asyncio.current_task()
    assert this is not None
    watcher = asyncio.create_task(_watch_disconnect(receive, gone, call, this))
    try:
        async for chunk in gen:
            if gone.is_set():
                raise ClientGone
            await sse.event(chunk)
    except GatewayError as exc:
        if not sse.started:
            raise
        await sse.error(exc)
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
        await _aclose(gen)
        if not sse.started:
            raise
        await _stream_failed(sse, call, exc)
        return
    finally:
        watcher.cancel()
    await sse.done()


async def _stream_failed(sse: _SSE, call: Call, exc: Exception) -> None:
    """After the first byte the status is sent: the failure travels as the stream's last event."""

    if isinstance(exc, ProviderError):
        await sse.error(error_for(exc))
    else:
        log.exception("gateway stream error")
        await call.abort(exc)
        await sse.error(_internal())


async def _aclose(gen: AsyncGenerator[dict, None]) -> None:
    try:
        await gen.aclose()
    except Exception:
        log.debug("stream did not close cleanly", exc_info=True)


def _internal() -> GatewayError:
    return GatewayError(
        500,
        "Internal error in the gateway; the request id identifies it in our logs.",
        type="api_error",
        code="internal_error",
    )


def _header(scope: HTTPScope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


_claude_names: dict[str, tuple[float, str]] = {}  # Anthropic model name → the gateway's model, for a minute


async def _gateway_model(requested: str) -> str:
    if not am.is_anthropic_name(requested):
        return requested
    now = time.monotonic()
    known = _claude_names.get(requested)
    if known is not None and now - known[0] < 60:
        return known[1]
    model = await run_sync(am.gateway_model, requested)
    if len(_claude_names) > 1000:
        _claude_names.clear()
    _claude_names[requested] = (now, model)
    return model


async def _messages_call(
    scope: HTTPScope, receive: Receive, ex: Exchange, *, counting: bool = False
) -> tuple[dict, dict, str]:
    """Authenticate and read a Messages request: (the request, its chat body, the model the client named)."""
    ex.anthropic = True
    info = await authenticate(scope)
    request = _parse_json(await _read_body(receive))
    requested = am.requested_model(request)
    model = await _gateway_model(requested)
    body = am.to_chat(request, model=model, beta=_header(scope, b"anthropic-beta"), counting=counting)
    ex.ctx = _context(info, "chat")
    check_chat(body)
    return request, body, requested


async def messages(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    """`POST /v1/messages`: Anthropic's Messages API on the same router, admission, metering and caps."""
    _, body, requested = await _messages_call(scope, receive, ex)
    ctx = cast("CallContext", ex.ctx)
    route = await resolve(ctx, body["model"])
    call = ex.call = Call(ctx, route, body)
    await call.start()
    if not body.get("stream"):
        result = await _unless_hung_up(receive, call, call.complete())
        await _respond(send, 200, dumps(am.from_chat(result, requested)), ctx.request_id)
        return
    await _stream(receive, call, _MessagesSSE(send, ctx.request_id, requested))


async def count_tokens(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    """`POST /v1/messages/count_tokens`: Anthropic's own count where the model is Anthropic's (free, unmetered),
    else the gateway's estimate (the one admission reserves by)."""
    request, body, _ = await _messages_call(scope, receive, ex, counting=True)
    ctx = cast("CallContext", ex.ctx)
    route = await resolve(ctx, body["model"])
    target = route.targets[0] if route.targets else None
    if target is not None and target.protocol == "anthropic":
        try:
            tokens = await anthropic_adapter.count_tokens(provider_target(target), request)
        except ProviderError as exc:
            raise error_for(exc) from None
    else:
        tokens = estimate_tokens(prompt_chars(body))
    await _respond(send, 200, orjson.dumps({"input_tokens": tokens}), ctx.request_id)


_Saver = Callable[[dict, dict], Awaitable[None]]


async def _conversation(info: KeyInfo, request: dict) -> list[dict]:
    """The conversation a request continues (`previous_response_id`), empty without one."""
    previous = request.get("previous_response_id")
    if previous is None:
        return []
    if not isinstance(previous, str) or not previous or len(previous) > 64:
        raise GatewayError(400, "`previous_response_id` must be a response id.", param="previous_response_id")
    found = await run_sync(responses_store.conversation_of, info.tenant_id, previous)
    if found is None:
        raise GatewayError(
            400,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return found


def _saver(info: KeyInfo, request: dict, items: list[dict], conversation: list[dict]) -> _Saver:
    """What keeps an answer (`store`, the default): its body, its input items and the conversation through it.
    A store that fails costs the follow-ups, not the answer the client paid for."""
    store = request.get("store", True) is not False

    async def save(body: dict, assistant: dict) -> None:
        if not store:
            return
        try:
            await run_sync(
                responses_store.save,
                tenant_id=info.tenant_id,
                api_key_id=info.id,
                agent_id=info.agent_id,
                body=body,
                items=items,
                conversation=[*conversation, assistant],
            )
        except Exception:
            log.exception("storing response %s failed; it cannot be continued or read back", body.get("id"))

    return save


async def responses_create(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    """`POST /v1/responses`: OpenAI's Responses API bridged onto the router (every provider, every mode)."""
    info = await authenticate(scope)
    request = _parse_json(await _read_body(receive))
    ctx = ex.ctx = _context(info, "chat")
    items = ra.input_items(request)
    history = await _conversation(info, request)
    body = ra.to_chat(request, items, history)
    check_chat(body)
    body[RESPONSES_PASSTHROUGH] = ra.passthrough(request, items, history)
    route = await resolve(ctx, body["model"])
    call = ex.call = Call(ctx, route, body)
    await call.start()
    response_id, created = ra.new_id("resp"), int(time.time())
    first = (
        1
        if body["messages"] and body["messages"][0]["role"] == "system" and request.get("instructions")
        else 0
    )
    save = _saver(info, request, items, body["messages"][first:])
    if not body.get("stream"):
        result = await _unless_hung_up(receive, call, call.complete())
        out, assistant = ra.from_chat(response_id, request, result, created)
        await save(out, assistant)
        await _respond(send, 200, dumps(out), ctx.request_id)
        return
    translator = ra.StreamTranslator(response_id, request, created)
    await _stream(receive, call, _ResponsesSSE(send, ctx.request_id, translator, save))


def _response_id(scope: HTTPScope) -> tuple[str, str]:
    """(id, what follows it) of a `/v1/responses/{id}[/input_items]` path."""
    rest = scope["path"].rstrip("/")[len("/v1/responses/") :]
    response_id, _, tail = rest.partition("/")
    return response_id, tail


def _no_response(response_id: str) -> GatewayError:
    shown = response_id[:64]
    return GatewayError(
        404, f"No response found with id '{shown}'.", code="not_found", error_kind="not_found"
    )


async def response_get(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    info = await authenticate(scope)
    ex.ctx = _context(info, "chat")
    response_id, _ = _response_id(scope)
    body = await run_sync(responses_store.body_of, info.tenant_id, response_id)
    if body is None:
        raise _no_response(response_id)
    await _respond(send, 200, dumps(body), ex.ctx.request_id)


async def response_delete(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    info = await authenticate(scope)
    ex.ctx = _context(info, "chat")
    response_id, _ = _response_id(scope)
    if not await run_sync(responses_store.delete, info.tenant_id, response_id):
        raise _no_response(response_id)
    body = {"id": response_id, "object": "response.deleted", "deleted": True}
    await _respond(send, 200, dumps(body), ex.ctx.request_id)


async def response_input_items(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    info = await authenticate(scope)
    ex.ctx = _context(info, "chat")
    response_id, _ = _response_id(scope)
    items = await run_sync(responses_store.input_items_of, info.tenant_id, response_id)
    if items is None:
        raise _no_response(response_id)
    query = _query(scope)
    ordered = list(items) if query.get("order") == "asc" else list(reversed(items))
    after = query.get("after")
    if after:
        ids = [i.get("id") for i in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    limit = min(max(int(query["limit"]) if query.get("limit", "").isdigit() else 20, 1), 100)
    page = ordered[:limit]
    body = {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": len(ordered) > limit,
    }
    await _respond(send, 200, dumps(body), ex.ctx.request_id)


def _query(scope: HTTPScope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _dynamic_route(method: str, path: str) -> Handler | None:
    """Routes with an id in the path: `/v1/responses/{id}` and `/v1/responses/{id}/input_items`."""
    if not path.startswith("/v1/responses/"):
        return None
    response_id, _, tail = path[len("/v1/responses/") :].partition("/")
    if not response_id:
        return None
    if tail == "" and method == "GET":
        return response_get
    if tail == "" and method == "DELETE":
        return response_delete
    if tail == "input_items" and method == "GET":
        return response_input_items
    return None


async def embeddings(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    info = await authenticate(scope)
    body = _parse_json(await _read_body(receive))
    ctx = ex.ctx = _context(info, "embedding")
    check_embeddings(body)

    route = await resolve(ctx, body["model"], embeddings=True)
    call = ex.call = Call(ctx, route, body, embeddings=True)
    await call.start()
    result = await _unless_hung_up(receive, call, call.complete("embeddings"))
    await _respond(send, 200, dumps(result), ctx.request_id)


async def list_models(scope: HTTPScope, receive: Receive, send: Send, ex: Exchange) -> None:
    info = await authenticate(scope)
    ctx = ex.ctx = _context(info, "chat")

    data = await _cached(
        hot_cache.routes,
        ("models", info.tenant_id, info.agent_id),
        models_for_gateway,
        tenant_id=info.tenant_id,
        agent_id=info.agent_id,
    )
    if info.allowed_models or info.agent_allowed_models:
        data = [m for m in data if await _may_call(ctx, m)]
    body = orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": m.split(":", 1)[0]} for m in data
            ],
        }
    )
    await _respond(send, 200, body, ctx.request_id)


async def _may_call(ctx: CallContext, model: str) -> bool:
    """Whether the key (and its agent) may call a listed model: `default` as it resolves, a custom endpoint's own
    model name by its `custom:` id."""
    if model == "default":
        try:
            await resolve(ctx, model)
        except GatewayError:
            return False
        return True
    model_id = model if ":" in model else f"custom:{model}"
    return all(allows(p, model_id) for p in (ctx.key_allowed_models, ctx.agent_allowed_models))


Handler = Callable[["HTTPScope", "Receive", "Send", Exchange], Awaitable[None]]

ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): list_models,
    ("POST", "/v1/messages"): messages,
    ("POST", "/v1/messages/count_tokens"): count_tokens,
    ("POST", "/v1/responses"): responses_create,
}


async def app(scope: HTTPScope, receive: Receive, send: Send) -> None:
    """ASGI entry for `/v1/*`."""

    path = scope["path"].rstrip("/") or "/"
    handler = ROUTES.get((scope["method"], path)) or _dynamic_route(scope["method"], path)
    ex = Exchange()
    fallback_id = "req_" + uuid.uuid4().hex
    try:
        if handler is None:
            known = {p for _, p in ROUTES}
            if scope["path"].rstrip("/") in known:
                raise GatewayError(405, f"Method {scope['method']} is not allowed on {scope['path']}.")
            raise GatewayError(
                404,
                f"Unknown endpoint {scope['path']}; this gateway serves /v1/chat/completions, "
                "/v1/embeddings, /v1/models, /v1/messages, /v1/messages/count_tokens and /v1/responses.",
                code="unknown_url",
            )
        await handler(scope, receive, send, ex)
    except GatewayError as exc:
        await _settle(ex, exc)
        await _error(send, exc, ex.ctx.request_id if ex.ctx else fallback_id, anthropic=ex.anthropic)
    except ClientGone:
        await _settle(ex, None)
    except asyncio.CancelledError:
        await _settle(ex, None)
        raise
    except Exception as exc:
        log.exception("gateway error")
        await _settle(ex, exc)
        try:
            await _error(
                send, _internal(), ex.ctx.request_id if ex.ctx else fallback_id, anthropic=ex.anthropic
            )
        except Exception:
            log.debug("could not send the error response", exc_info=True)


async def _settle(ex: Exchange, exc: BaseException | None) -> None:
    """The last guard of 'every admitted call settles exactly once': a call the handler left unsettled (an
    exception in our code, a hang-up before the call got going) is settled here."""
    call = ex.call
    if call is None or call.finished or call.reservation is None:
        return
    try:
        await call.abort(exc)
    except Exception:
        log.exception("settling an aborted call failed; its reservation fades after %s s", 600)


def _drain_in_thread() -> None:

    try:
        drain()
    finally:
        connections.close_all()


def _background_in_thread() -> None:
    """Release the counters of calls settled while Redis was away, and, where the web processes drain
    (`USAGE_DRAINERS`), move the queued usage events into PostgreSQL."""
    retry_unsettled()
    if "web" in settings.USAGE_DRAINERS:
        _drain_in_thread()


async def _drain_loop(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_sync(_background_in_thread)
        except Exception:
            log.exception("usage drain failed; events stay queued")


async def lifespan(scope: LifespanScope, receive: LifespanReceive, send: Send) -> None:
    """Start the usage drainer and the cache listener with the server; stop them (after a last drain) on shutdown."""

    tasks: list[asyncio.Task] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            tasks = [
                asyncio.create_task(_drain_loop(settings.USAGE_DRAIN_INTERVAL)),
                asyncio.create_task(hot_cache.listen()),
            ]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for task in tasks:
                task.cancel()
            try:
                await run_sync(_background_in_thread)
            except Exception:
                log.exception("final usage drain failed; events stay queued")

            await aclose_clients()  # close the pooled upstream connections cleanly

            await asyncio.get_running_loop().run_in_executor(None, sync.shutdown)
            await send({"type": "lifespan.shutdown.complete"})
            return
