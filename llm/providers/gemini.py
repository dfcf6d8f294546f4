"""Google Gemini (`generateContent`, `streamGenerateContent?alt=sse`, `batchEmbedContents`), to and from OpenAI's shape.

Shapes relied on: request {contents[{role: user|model, parts[{text}|{inlineData{mimeType, data}}|{functionCall{name,
args}}|{functionResponse{name, response}}]}], systemInstruction{parts}, generationConfig{temperature,
maxOutputTokens, stopSequences, topP}, tools[{functionDeclarations[{name, description, parameters}]}]}, header
`x-goog-api-key`; response {candidates[{content{parts}, finishReason: STOP|MAX_TOKENS|SAFETY}], usageMetadata
{promptTokenCount, candidatesTokenCount, cachedContentTokenCount}}; errors {"error": {code, message, status}}.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator

import orjson

from llm.providers.base import ProviderError, Target, UsageBlock, json_of, send, sse_events, usage_block

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}


def _base(target: Target) -> str:
    base = target.base_url.rstrip("/")
    return base if base.endswith(("/v1beta", "/v1")) else base + "/v1beta"


def _headers(target: Target) -> dict:
    return {"x-goog-api-key": target.api_key}


def _parts(content) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content or []:
        if part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:"):
                mime, _, data = url[5:].partition(";base64,")
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                parts.append({"fileData": {"fileUri": url}})
    return parts


def to_native(body: dict) -> dict:
    system: list[dict] = []
    contents: list[dict] = []
    names: dict[str, str] = {}
    for m in body.get("messages", []):
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(m.get("content")))
        elif role == "tool":
            name = names.get(m.get("tool_call_id", ""), "tool")
            contents.append(
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": name, "response": {"content": m.get("content")}}}
                    ],
                }
            )
        else:
            parts = _parts(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                names[call.get("id", "")] = fn.get("name", "")
                parts.append(
                    {
                        "functionCall": {
                            "name": fn.get("name"),
                            "args": orjson.loads(fn.get("arguments") or "{}"),
                        }
                    }
                )
            contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    native: dict = {"contents": contents}
    if system:
        native["systemInstruction"] = {"parts": system}
    config: dict = {}
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    if body.get("stop"):
        config["stopSequences"] = [body["stop"]] if isinstance(body["stop"], str) else list(body["stop"])
    if config:
        native["generationConfig"] = config
    if body.get("tools"):
        native["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t["function"]["name"],
                        "description": t["function"].get("description", ""),
                        **(
                            {"parameters": t["function"]["parameters"]}
                            if t["function"].get("parameters")
                            else {}
                        ),
                    }
                    for t in body["tools"]
                    if t.get("type") == "function"
                ]
            }
        ]
    return native


def _usage(meta: dict) -> UsageBlock:
    """`promptTokenCount` includes the cached content (`cachedContentTokenCount`); `candidatesTokenCount` leaves
    out the thinking (`thoughtsTokenCount`), which is billed as output: the completion is the two together."""
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return usage_block(
        int(meta.get("promptTokenCount") or 0),
        int(meta.get("candidatesTokenCount") or 0) + thoughts,
        int(meta.get("cachedContentTokenCount") or 0),
        reasoning=thoughts,
    )


def _message(parts: list[dict]) -> tuple[str, list[dict]]:
    text, calls = [], []
    for part in parts:
        if "text" in part:
            text.append(part["text"])
        elif "functionCall" in part:
            call = part["functionCall"]
            calls.append(
                {
                    "id": "call_" + uuid.uuid4().hex[:12],
                    "type": "function",
                    "function": {
                        "name": call.get("name"),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
    return "".join(text), calls


async def chat(target: Target, body: dict) -> dict:
    url = f"{_base(target)}/models/{target.model}:generateContent"
    data = json_of(
        target, await send(target, "POST", url, headers=_headers(target), json_body=to_native(body))
    )
    candidate = (data.get("candidates") or [{}])[0]
    text, calls = _message((candidate.get("content") or {}).get("parts") or [])
    message: dict = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else _FINISH.get(candidate.get("finishReason", "STOP"), "stop")
    return {
        "id": data.get("responseId") or "gen-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": target.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(data.get("usageMetadata") or {}),
    }


async def stream_chat(target: Target, body: dict) -> AsyncGenerator[dict, None]:
    url = f"{_base(target)}/models/{target.model}:streamGenerateContent?alt=sse"
    response = await send(
        target, "POST", url, headers=_headers(target), json_body=to_native(body), stream=True
    )
    base = {
        "id": "gen-" + uuid.uuid4().hex[:12],
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": target.model,
    }
    usage: dict = {}
    finish = None
    tool_index = 0
    async for _, data in sse_events(target, response):
        payload = orjson.loads(data)
        usage = payload.get("usageMetadata") or usage
        for candidate in payload.get("candidates") or []:
            text, calls = _message((candidate.get("content") or {}).get("parts") or [])
            if text:
                yield {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            for call in calls:
                yield {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": None,
                            "delta": {"tool_calls": [{"index": tool_index, **call}]},
                        }
                    ],
                }
                tool_index += 1
                finish = "tool_calls"
            if candidate.get("finishReason") and finish != "tool_calls":
                finish = _FINISH.get(candidate["finishReason"], "stop")
    if finish is None:
        raise ProviderError(
            "unavailable",
            f"{target.provider}: the stream ended before it was complete",
            provider=target.provider,
        )
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    yield {**base, "choices": [], "usage": _usage(usage)}


async def embeddings(target: Target, body: dict) -> dict:
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    url = f"{_base(target)}/models/{target.model}:batchEmbedContents"
    payload = {
        "requests": [{"model": f"models/{target.model}", "content": {"parts": [{"text": t}]}} for t in inputs]
    }
    data = json_of(target, await send(target, "POST", url, headers=_headers(target), json_body=payload))
    vectors = [e.get("values", []) for e in data.get("embeddings", [])]
    tokens = sum(max(1, len(t) // 4) for t in inputs)  # Gemini does not report embedding tokens
    return {
        "object": "list",
        "model": target.model,
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def list_models(target: Target) -> list[str]:
    data = json_of(target, await send(target, "GET", f"{_base(target)}/models", headers=_headers(target)))
    return [m.get("name", "").removeprefix("models/") for m in data.get("models", [])]
