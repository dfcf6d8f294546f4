"""Anthropic's Messages API (`POST /v1/messages`), to and from OpenAI's chat shape, streaming and tools included.

Shapes relied on: request {model, system, messages[{role, content: [text|image|tool_use|tool_result]}], max_tokens,
temperature, stop_sequences, tools[{name, description, input_schema}], tool_choice, stream}; response {id, content
[{type: text|tool_use}], stop_reason, usage{input_tokens, output_tokens, cache_read_input_tokens}}; SSE events
message_start, content_block_start, content_block_delta (text_delta | input_json_delta), message_delta
(stop_reason, usage.output_tokens), message_stop; errors {"type": "error", "error": {"type", "message"}}.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import orjson

from llm.providers.base import (
    MESSAGES_PASSTHROUGH,
    NATIVE_EVENT,
    NATIVE_MESSAGE,
    ProviderError,
    Target,
    UsageBlock,
    json_of,
    send,
    sse_events,
    upstream_error,
    usage_block,
)

VERSION = "2023-06-01"
_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


def _url(target: Target) -> str:
    base = target.base_url.rstrip("/")
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def _headers(target: Target, body: dict | None = None) -> dict:
    headers = {"x-api-key": target.api_key, "anthropic-version": VERSION}
    beta = ((body or {}).get(MESSAGES_PASSTHROUGH) or {}).get("beta")
    if beta:
        headers["anthropic-beta"] = beta  # betas the gateway does not know are the client's business
    return headers


def _image(part: dict) -> dict:
    url = (part.get("image_url") or {}).get("url", "")
    if url.startswith("data:"):
        media, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content(content) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or []:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            blocks.append(_image(part))
    return blocks


def _passthrough(target: Target, body: dict, *, stream: bool) -> dict | None:
    """The client's own Messages request, for this target's model, with the checked max_tokens."""
    original = (body.get(MESSAGES_PASSTHROUGH) or {}).get("request")
    if not isinstance(original, dict):
        return None
    native = {k: v for k, v in original.items() if k != "stream"}
    native["model"] = target.model
    native["max_tokens"] = body.get("max_tokens") or original.get("max_tokens") or 4096
    if stream:
        native["stream"] = True
    return native


def to_native(target: Target, body: dict, *, stream: bool) -> dict:
    native_request = _passthrough(target, body, stream=stream)
    if native_request is not None:
        return native_request
    system, messages = _messages(body.get("messages", []))
    native: dict = {
        "model": target.model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or 4096,
    }
    if system:
        native["system"] = "\n\n".join(system)
    if body.get("temperature") is not None:
        native["temperature"] = min(float(body["temperature"]), 1.0)  # Anthropic's range is 0–1
    if body.get("top_p") is not None:
        native["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        native["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        native.update(_tools(body["tools"], body.get("tool_choice")))
    if stream:
        native["stream"] = True
    return native


def _messages(chat: list[dict]) -> tuple[list[str], list[dict]]:
    """OpenAI's messages as Anthropic's: system text apart, tool results as user blocks, tool calls as tool_use."""
    system: list[str] = []
    messages: list[dict] = []
    for m in chat:
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(b["text"] for b in _content(m.get("content")) if b["type"] == "text")
        elif role == "tool":
            block = _tool_result(m)
            if messages and messages[-1]["role"] == "user":
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        else:
            blocks = _content(m.get("content"))
            blocks.extend(_tool_use(call) for call in m.get("tool_calls") or [])
            messages.append({"role": "assistant" if role == "assistant" else "user", "content": blocks})
    return system, messages


def _tool_result(m: dict) -> dict:
    content = m.get("content")
    return {
        "type": "tool_result",
        "tool_use_id": m.get("tool_call_id", ""),
        "content": content if isinstance(content, str) else _content(content),
    }


def _tool_use(call: dict) -> dict:
    fn = call.get("function", {})
    try:
        args = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        args = {}
    return {"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": args}


def _tools(tools: list[dict], choice: object) -> dict:
    native: dict = {
        "tools": [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if t.get("type") == "function"
        ]
    }
    if choice == "required":
        native["tool_choice"] = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("function"):
        native["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice == "none":
        native["tool_choice"] = {"type": "none"}
    return native


def _usage(u: dict) -> UsageBlock:
    """Anthropic's `input_tokens` leaves out the tokens read from and written to the prompt cache: the prompt is
    the three together; `cache_creation` splits the writes by how long they are kept (an hour's cost more).
    Thinking is billed as output and counted in `output_tokens` (not reported apart)."""
    cached = int(u.get("cache_read_input_tokens") or 0)
    written = int(u.get("cache_creation_input_tokens") or 0)
    by_ttl = u.get("cache_creation")
    hour = int(by_ttl.get("ephemeral_1h_input_tokens") or 0) if isinstance(by_ttl, dict) else 0
    prompt = int(u.get("input_tokens") or 0) + cached + written
    return usage_block(
        prompt, int(u.get("output_tokens") or 0), cached, cache_write=written, cache_write_1h=hour
    )


def from_native(data: dict, target: Target) -> dict:
    text = []
    tool_calls = []
    for block in data.get("content", []):
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: dict = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": data.get("id", ""),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("model", target.model),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _STOP.get(data.get("stop_reason") or "", "stop"),
            }
        ],
        "usage": _usage(data.get("usage") or {}),
    }


async def chat(target: Target, body: dict) -> dict:
    response = await send(
        target,
        "POST",
        _url(target),
        headers=_headers(target, body),
        json_body=to_native(target, body, stream=False),
    )
    data = json_of(target, response)
    result = from_native(data, target)
    if MESSAGES_PASSTHROUGH in body:
        result[NATIVE_MESSAGE] = data
    return result


async def stream_chat(target: Target, body: dict) -> AsyncGenerator[dict, None]:
    response = await send(
        target,
        "POST",
        _url(target),
        headers=_headers(target, body),
        json_body=to_native(target, body, stream=True),
        stream=True,
    )
    relay = MESSAGES_PASSTHROUGH in body
    base = {"id": "", "object": "chat.completion.chunk", "created": int(time.time()), "model": target.model}
    usage: dict = {}
    tool_index: dict[int, int] = {}
    finish = None
    done = False
    async for event, data in sse_events(target, response):
        payload = orjson.loads(data) if data else {}
        kind = payload.get("type", event)
        if relay and kind != "error":  # an error is raised below: the router answers it (and may fail over)
            yield {**base, "choices": [], NATIVE_EVENT: (kind, data)}
        if kind == "message_start":
            message = payload.get("message", {})
            base["id"] = message.get("id", "")
            usage.update(message.get("usage") or {})
            yield {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ],
            }
        elif kind == "content_block_start":
            block = payload.get("content_block", {})
            if block.get("type") == "tool_use":
                idx = tool_index.setdefault(payload.get("index", 0), len(tool_index))
                yield {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": None,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": idx,
                                        "id": block.get("id"),
                                        "type": "function",
                                        "function": {"name": block.get("name"), "arguments": ""},
                                    }
                                ]
                            },
                        }
                    ],
                }
        elif kind == "content_block_delta":
            delta = payload.get("delta", {})
            if delta.get("type") == "text_delta":
                yield {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"content": delta.get("text", "")}, "finish_reason": None}
                    ],
                }
            elif delta.get("type") == "input_json_delta":
                idx = tool_index.get(payload.get("index", 0), 0)
                yield {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": None,
                            "delta": {
                                "tool_calls": [
                                    {"index": idx, "function": {"arguments": delta.get("partial_json", "")}}
                                ]
                            },
                        }
                    ],
                }
        elif kind == "message_delta":
            finish = _STOP.get((payload.get("delta") or {}).get("stop_reason") or "", "stop")
            usage.update({k: v for k, v in (payload.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            done = True
            break
        elif kind == "error":
            err = payload.get("error", {})
            raise upstream_error(
                target,
                "rate_limit" if err.get("type") == "rate_limit_error" else "unavailable",
                "stream error",
                err.get("message", ""),
            )
    if not done:
        raise ProviderError(
            "unavailable",
            f"{target.provider}: the stream ended before it was complete",
            provider=target.provider,
        )
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish or "stop"}]}
    yield {**base, "choices": [], "usage": _usage(usage)}


async def embeddings(target: Target, body: dict) -> dict:
    raise ProviderError(
        "bad_request",
        "Anthropic has no embeddings API; pick an embedding model of another provider.",
        provider=target.provider,
    )


async def list_models(target: Target) -> list[str]:
    base = target.base_url.rstrip("/")
    url = base + ("/models" if base.endswith("/v1") else "/v1/models")
    data = json_of(target, await send(target, "GET", url, headers=_headers(target)))
    return [m.get("id") for m in data.get("data", []) if m.get("id")]


async def count_tokens(target: Target, request: dict) -> int:
    """Anthropic's own count of a Messages request's input tokens (`POST /v1/messages/count_tokens`, free)."""
    native = {
        k: v for k, v in request.items() if k not in ("max_tokens", "stream", "metadata", "temperature")
    }
    native["model"] = target.model
    url = _url(target) + "/count_tokens"
    data = json_of(target, await send(target, "POST", url, headers=_headers(target), json_body=native))
    return int(data.get("input_tokens") or 0)
