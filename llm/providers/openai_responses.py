"""OpenAI's Responses API (`POST /v1/responses`) for a target on OpenAI's own API, when the client spoke it too.

The Responses ingress (llm.gateway.responses_api) sets `RESPONSES_PASSTHROUGH` on the chat body with the client's
request and the whole input as items; this sends it as OpenAI's own Responses request (never stored upstream: the
gateway stores and chains responses itself) and answers in the chat shape the router meters, the native response
kept beside it (NATIVE_RESPONSE; streamed: each native event on a chunk, NATIVE_EVENT).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import orjson

from llm.providers.base import (
    NATIVE_EVENT,
    NATIVE_RESPONSE,
    RESPONSES_PASSTHROUGH,
    ProviderError,
    Target,
    UsageBlock,
    json_of,
    send,
    sse_events,
    upstream_error,
    usage_block,
)


def _headers(target: Target) -> dict:
    return {"authorization": f"Bearer {target.api_key}"} if target.api_key else {}


def _url(target: Target) -> str:
    return target.base_url.rstrip("/") + "/responses"


def native_request(target: Target, body: dict, *, stream: bool) -> dict:
    spec = body[RESPONSES_PASSTHROUGH]
    native = {
        k: v for k, v in spec["request"].items() if k not in ("previous_response_id", "stream", "store")
    }
    native["model"] = target.model
    native["input"] = spec["input"]
    native["store"] = False
    if body.get("max_tokens") is not None:
        native["max_output_tokens"] = body["max_tokens"]
    if stream:
        native["stream"] = True
    return native


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _usage(native: dict) -> UsageBlock:
    u = _mapping(native.get("usage"))
    inputs, outputs = _mapping(u.get("input_tokens_details")), _mapping(u.get("output_tokens_details"))
    return usage_block(
        int(u.get("input_tokens") or 0),
        int(u.get("output_tokens") or 0),
        int(inputs.get("cached_tokens") or 0),
        reasoning=int(outputs.get("reasoning_tokens") or 0),
    )


def chat_shape(native: dict) -> dict:
    """A native Response as the chat answer the router meters and the conversation continues with."""
    output = [i for i in native.get("output") or [] if isinstance(i, dict)]
    text = "".join(
        str(part.get("text", ""))
        for item in output
        if item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )
    calls = [
        {
            "id": item.get("call_id", ""),
            "type": "function",
            "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
        }
        for item in output
        if item.get("type") == "function_call"
    ]
    message: dict = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else ("length" if native.get("status") == "incomplete" else "stop")
    return {
        "id": native.get("id", ""),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": native.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(native),
        NATIVE_RESPONSE: native,
    }


async def chat(target: Target, body: dict) -> dict:
    response = await send(
        target,
        "POST",
        _url(target),
        headers=_headers(target),
        json_body=native_request(target, body, stream=False),
    )
    return chat_shape(json_of(target, response))


async def stream_chat(target: Target, body: dict) -> AsyncGenerator[dict, None]:
    response = await send(
        target,
        "POST",
        _url(target),
        headers=_headers(target),
        json_body=native_request(target, body, stream=True),
        stream=True,
    )
    base = {"id": "", "object": "chat.completion.chunk", "created": int(time.time()), "model": target.model}
    done = False
    async for event, data in sse_events(target, response):
        if data == "[DONE]":
            break
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        kind = payload.get("type", event) if isinstance(payload, dict) else event
        if kind in ("error", "response.failed"):
            failed = _mapping(_mapping(payload).get("response", payload))
            error = _mapping(failed.get("error")) or _mapping(payload)
            raise upstream_error(target, "unavailable", "stream error", str(error.get("message", "")))
        chunk: dict = {**base, "choices": [], NATIVE_EVENT: (kind, payload)}
        if kind == "response.output_text.delta":
            delta = {"content": str(payload.get("delta", ""))}
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
        yield chunk
        if kind == "response.completed":
            yield {**base, "choices": [], "usage": _usage(_mapping(payload.get("response")))}
            done = True
            break
    if not done:
        raise ProviderError(
            "unavailable",
            f"{target.provider}: the stream ended before it was complete",
            provider=target.provider,
        )
