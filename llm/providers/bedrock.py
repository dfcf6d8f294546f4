"""AWS Bedrock Converse and ConverseStream, SigV4-signed with botocore; the stream's event-stream binary framing is
decoded by botocore's parser.

Shapes relied on: POST /model/{modelId}/converse {messages[{role, content[{text}|{image}|{toolUse}|{toolResult}]}],
system[{text}], inferenceConfig{maxTokens, temperature, topP, stopSequences}, toolConfig{tools[{toolSpec{name,
description, inputSchema{json}}}]}} → {output{message{role, content}}, stopReason: end_turn|max_tokens|tool_use|
stop_sequence, usage{inputTokens, outputTokens}}; /converse-stream answers application/vnd.amazon.eventstream
frames whose `:event-type` header is messageStart, contentBlockStart, contentBlockDelta, contentBlockStop,
messageStop or metadata (usage), and `:message-type` exception for errors (`:exception-type`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from llm.providers.base import (
    ProviderError,
    Target,
    UsageBlock,
    error_from_exception,
    error_from_response,
    http_client,
    read_bounded,
    timeout_of,
    upstream_error,
    usage_block,
)

if TYPE_CHECKING:
    from llm.jsontypes import JSONObject

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}
_EXCEPTION_KINDS = {
    "ThrottlingException": "rate_limit",
    "ValidationException": "bad_request",
    "AccessDeniedException": "auth",
    "UnrecognizedClientException": "auth",
    "ResourceNotFoundException": "not_found",
    "ModelNotReadyException": "unavailable",
    "ServiceUnavailableException": "unavailable",
    "ModelTimeoutException": "timeout",
    "ModelStreamErrorException": "unavailable",
    "InternalServerException": "unavailable",
}


def _endpoint(target: Target) -> str:
    region = target.options.get("region") or "us-east-1"
    return (target.base_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")


def _signed_headers(target: Target, url: str, body: bytes) -> dict:
    credentials = Credentials(
        target.options.get("access_key_id") or "",
        target.options.get("secret_access_key") or target.api_key,
        target.options.get("session_token") or None,
    )
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    SigV4Auth(credentials, "bedrock", target.options.get("region") or "us-east-1").add_auth(request)
    return dict(request.headers.items())


def to_native(body: dict) -> dict:
    system: list[dict] = []
    messages: list[JSONObject] = []
    for m in body.get("messages", []):
        role, content = m.get("role"), m.get("content")
        parts: list[dict] = (
            [{"text": content}]
            if isinstance(content, str) and content
            else [
                {"text": p.get("text", "")}
                for p in content or []
                if isinstance(p, dict) and p.get("type") == "text"
            ]
        )
        if role in ("system", "developer"):
            system.extend(parts)
        elif role == "tool":
            block = {
                "toolResult": {"toolUseId": m.get("tool_call_id", ""), "content": parts or [{"text": ""}]}
            }
            if messages and messages[-1]["role"] == "user":
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        else:
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                parts.append(
                    {
                        "toolUse": {
                            "toolUseId": call.get("id", ""),
                            "name": fn.get("name"),
                            "input": orjson.loads(fn.get("arguments") or "{}"),
                        }
                    }
                )
            messages.append({"role": "assistant" if role == "assistant" else "user", "content": parts})
    native: dict = {"messages": messages}
    if system:
        native["system"] = system
    config = {}
    if body.get("max_completion_tokens") or body.get("max_tokens"):
        config["maxTokens"] = body.get("max_completion_tokens") or body.get("max_tokens")
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    if body.get("stop"):
        config["stopSequences"] = [body["stop"]] if isinstance(body["stop"], str) else list(body["stop"])
    if config:
        native["inferenceConfig"] = config
    if body.get("tools"):
        native["toolConfig"] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": t["function"]["name"],
                        "description": t["function"].get("description") or t["function"]["name"],
                        "inputSchema": {
                            "json": t["function"].get("parameters") or {"type": "object", "properties": {}}
                        },
                    }
                }
                for t in body["tools"]
                if t.get("type") == "function"
            ]
        }
    return native


def _usage(u: dict) -> UsageBlock:
    """Converse's `inputTokens` leaves out the tokens read from and written to the prompt cache (its `totalTokens`
    adds all four): the prompt is the three together. `cacheDetails` splits the writes by TTL (a write kept an
    hour is priced apart, as Anthropic's). Reasoning is not reported apart from `outputTokens`."""
    cached = int(u.get("cacheReadInputTokens") or 0)
    written = int(u.get("cacheWriteInputTokens") or 0)
    details = u.get("cacheDetails")
    hour = sum(
        int(d.get("inputTokens") or 0)
        for d in (details if isinstance(details, list) else [])
        if isinstance(d, dict) and d.get("ttl") == "1h"
    )
    return usage_block(
        int(u.get("inputTokens") or 0) + cached + written,
        int(u.get("outputTokens") or 0),
        cached,
        cache_write=written,
        cache_write_1h=hour,
    )


def _error(target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
    error_type = (headers.get("x-amzn-errortype") or "").split(":")[0]
    err = error_from_response(target, status, raw, headers)
    if error_type in _EXCEPTION_KINDS:
        err.kind = _EXCEPTION_KINDS[error_type]
    return err


async def _post(target: Target, path: str, body: dict, *, stream: bool) -> httpx.Response:
    url = f"{_endpoint(target)}/model/{quote(target.model, safe='')}/{path}"
    content = orjson.dumps(to_native(body))
    client = http_client()
    request = client.build_request(
        "POST",
        url,
        content=content,
        headers=_signed_headers(target, url, content),
        timeout=timeout_of(target),
    )
    try:
        response = await client.send(request, stream=True)
    except (TimeoutError, httpx.HTTPError, OSError) as exc:
        raise error_from_exception(target, exc) from None
    if response.status_code >= 400:
        raw = await response.aread()
        await response.aclose()
        raise _error(target, response.status_code, raw, response.headers)
    if not stream:
        await read_bounded(target, response)
    return response


async def chat(target: Target, body: dict) -> dict:
    data = orjson.loads((await _post(target, "converse", body, stream=False)).content)
    text, calls = [], []
    for block in ((data.get("output") or {}).get("message") or {}).get("content", []):
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(
                {
                    "id": use.get("toolUseId"),
                    "type": "function",
                    "function": {
                        "name": use.get("name"),
                        "arguments": orjson.dumps(use.get("input") or {}).decode(),
                    },
                }
            )
    message: dict = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "bedrock-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": target.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _STOP.get(str(data.get("stopReason")), "stop")}
        ],
        "usage": _usage(data.get("usage") or {}),
    }


async def stream_chat(target: Target, body: dict) -> AsyncGenerator[dict, None]:
    response = await _post(target, "converse-stream", body, stream=True)
    base = {
        "id": "bedrock-" + uuid.uuid4().hex[:12],
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": target.model,
    }
    buffer = EventStreamBuffer()
    finish = None
    usage = None
    tool_index = -1
    try:
        chunks = response.aiter_raw()
        while usage is None:
            try:
                async with asyncio.timeout(target.timeouts.idle):  # per chunk, not across a yield
                    raw = await anext(chunks)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ProviderError(
                    "timeout", f"{target.provider} stream stalled", provider=target.provider
                ) from None
            except (httpx.HTTPError, OSError) as exc:
                raise error_from_exception(target, exc) from None
            buffer.add_data(raw)
            for message in buffer:
                headers = message.headers
                payload = orjson.loads(message.payload) if message.payload else {}
                if headers.get(":message-type") == "exception":
                    kind = _EXCEPTION_KINDS.get(headers.get(":exception-type", ""), "unavailable")
                    raise upstream_error(target, kind, "stream error", payload.get("message"))
                event = headers.get(":event-type")
                if event == "messageStart":
                    yield {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                        ],
                    }
                elif event == "contentBlockStart" and "toolUse" in (payload.get("start") or {}):
                    use = payload["start"]["toolUse"]
                    tool_index += 1
                    yield {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": None,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": tool_index,
                                            "id": use.get("toolUseId"),
                                            "type": "function",
                                            "function": {"name": use.get("name"), "arguments": ""},
                                        }
                                    ]
                                },
                            }
                        ],
                    }
                elif event == "contentBlockDelta":
                    delta = payload.get("delta") or {}
                    if "text" in delta:
                        yield {
                            **base,
                            "choices": [
                                {"index": 0, "delta": {"content": delta["text"]}, "finish_reason": None}
                            ],
                        }
                    elif "toolUse" in delta:
                        yield {
                            **base,
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": None,
                                    "delta": {
                                        "tool_calls": [
                                            {
                                                "index": max(tool_index, 0),
                                                "function": {"arguments": delta["toolUse"].get("input", "")},
                                            }
                                        ]
                                    },
                                }
                            ],
                        }
                elif event == "messageStop":
                    finish = _STOP.get(str(payload.get("stopReason")), "stop")
                elif event == "metadata":
                    usage = payload.get("usage") or {}
    finally:
        await response.aclose()
    if finish is None or usage is None:
        raise ProviderError(
            "unavailable",
            f"{target.provider}: the stream ended before it was complete",
            provider=target.provider,
        )
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    yield {**base, "choices": [], "usage": _usage(usage)}


async def embeddings(target: Target, body: dict) -> dict:
    raise ProviderError(
        "bad_request",
        "Embeddings through Bedrock are not supported by this gateway yet; use an "
        "embedding model of another provider.",
        provider=target.provider,
    )


async def list_models(target: Target) -> list[str]:
    return [target.model] if target.model else []
