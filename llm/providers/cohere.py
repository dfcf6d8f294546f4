"""Cohere v2 (`POST /v2/chat`, `POST /v2/embed`), to and from OpenAI's shape.

Shapes relied on: chat request {model, messages[{role: system|user|assistant|tool, content, tool_calls,
tool_call_id}], temperature, max_tokens, stop_sequences, tools (OpenAI-style function tools), stream}; response
{id, finish_reason: COMPLETE|MAX_TOKENS|TOOL_CALL, message{content[{type: text, text}], tool_calls}, usage
{billed_units{input_tokens, output_tokens}, tokens{input_tokens, output_tokens}}}; SSE events message-start,
content-delta (delta.message.content.text), tool-call-start/delta, message-end (delta.finish_reason, delta.usage);
embed {texts, model, input_type, embedding_types: [float]} → {embeddings: {float: [[…]]}, meta.billed_units}.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import orjson

from llm.providers.base import ProviderError, Target, UsageBlock, json_of, send, sse_events, usage_block

_FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}


def _url(target: Target, path: str) -> str:
    return target.base_url.rstrip("/").removesuffix("/v2") + path


def _headers(target: Target) -> dict:
    return {"authorization": f"Bearer {target.api_key}"}


def to_native(target: Target, body: dict, *, stream: bool) -> dict:
    messages = []
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        msg = {"role": "system" if m.get("role") == "developer" else m.get("role"), "content": content or ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = m["tool_calls"]
        if m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        messages.append(msg)
    native: dict = {"model": target.model, "messages": messages, "stream": stream}
    for src, dst in (("temperature", "temperature"), ("max_tokens", "max_tokens"), ("top_p", "p")):
        if body.get(src) is not None:
            native[dst] = body[src]
    if body.get("stop"):
        native["stop_sequences"] = [body["stop"]] if isinstance(body["stop"], str) else list(body["stop"])
    if body.get("tools"):
        native["tools"] = body["tools"]
    return native


def _usage(u: dict) -> UsageBlock:
    tokens = u.get("tokens") or u.get("billed_units") or {}
    return usage_block(int(tokens.get("input_tokens") or 0), int(tokens.get("output_tokens") or 0))


async def chat(target: Target, body: dict) -> dict:
    data = json_of(
        target,
        await send(
            target,
            "POST",
            _url(target, "/v2/chat"),
            headers=_headers(target),
            json_body=to_native(target, body, stream=False),
        ),
    )
    msg = data.get("message") or {}
    text = "".join(c.get("text", "") for c in msg.get("content") or [] if c.get("type") == "text")
    message: dict = {"role": "assistant", "content": text if text or not msg.get("tool_calls") else None}
    if msg.get("tool_calls"):
        message["tool_calls"] = msg["tool_calls"]
    return {
        "id": data.get("id", ""),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": target.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _FINISH.get(str(data.get("finish_reason")), "stop"),
            }
        ],
        "usage": _usage(data.get("usage") or {}),
    }


async def stream_chat(target: Target, body: dict) -> AsyncGenerator[dict, None]:
    response = await send(
        target,
        "POST",
        _url(target, "/v2/chat"),
        headers=_headers(target),
        json_body=to_native(target, body, stream=True),
        stream=True,
    )
    base = {"id": "", "object": "chat.completion.chunk", "created": int(time.time()), "model": target.model}
    done = False
    async for event, data in sse_events(target, response):
        payload = orjson.loads(data)
        kind = payload.get("type", event)
        delta = payload.get("delta") or {}
        if kind == "message-start":
            base["id"] = payload.get("id", "")
        elif kind == "content-delta":
            text = ((delta.get("message") or {}).get("content") or {}).get("text", "")
            yield {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        elif kind in ("tool-call-start", "tool-call-delta"):
            call = (delta.get("message") or {}).get("tool_calls") or {}
            yield {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": None,
                        "delta": {"tool_calls": [{"index": payload.get("index", 0), **call}]},
                    }
                ],
            }
        elif kind == "message-end":
            yield {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {},
                        "finish_reason": _FINISH.get(str(delta.get("finish_reason")), "stop"),
                    }
                ],
            }
            yield {**base, "choices": [], "usage": _usage(delta.get("usage") or {})}
            done = True
            break
    if not done:
        raise ProviderError(
            "unavailable",
            f"{target.provider}: the stream ended before it was complete",
            provider=target.provider,
        )


async def embeddings(target: Target, body: dict) -> dict:
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    payload = {
        "model": target.model,
        "texts": inputs,
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    data = json_of(
        target,
        await send(target, "POST", _url(target, "/v2/embed"), headers=_headers(target), json_body=payload),
    )
    vectors = (data.get("embeddings") or {}).get("float") or []
    tokens = int(((data.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0)
    return {
        "object": "list",
        "model": target.model,
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def list_models(target: Target) -> list[str]:
    data = json_of(target, await send(target, "GET", _url(target, "/v1/models"), headers=_headers(target)))
    return [m.get("name") for m in data.get("models", []) if m.get("name")]
