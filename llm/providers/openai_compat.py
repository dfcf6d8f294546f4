"""OpenAI's Chat Completions wire protocol: OpenAI, OpenRouter, Mistral, Groq, DeepSeek, xAI, Ollama, vLLM…

This is the gateway's hot path: bodies are parsed with orjson and passed on nearly as they are.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import orjson

from llm.providers import openai_responses
from llm.providers.base import (
    RESPONSES_PASSTHROUGH,
    ProviderError,
    Target,
    Timeouts,
    UsageBlock,
    json_of,
    send,
    speaks_responses,
    sse_events,
    token_count,
    upstream_error,
    usage_block,
)

_DROP = ("model", RESPONSES_PASSTHROUGH)


def _headers(target: Target) -> dict:
    return {"authorization": f"Bearer {target.api_key}"} if target.api_key else {}


def _url(target: Target, path: str) -> str:
    return target.base_url.rstrip("/") + path


def request_body(target: Target, body: dict, *, stream: bool) -> dict:
    out = {k: v for k, v in body.items() if k not in _DROP}
    out["model"] = target.model
    if stream:
        out["stream"] = True
        # Always ask for usage: the stream is metered from it, and stripped for clients that did not ask.
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream", None)
        out.pop("stream_options", None)
    return out


def _usage(usage: dict) -> UsageBlock:
    """OpenAI's usage with its details: cache reads (`prompt_tokens_details.cached_tokens`), cache writes where
    the server reports them (`cache_write_tokens`, as OpenRouter and Azure do) and reasoning
    (`completion_tokens_details.reasoning_tokens`); `cost` is OpenRouter's, what the call cost (USD)."""
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    # DeepSeek reports its cache hits at the top (`prompt_cache_hit_tokens`), not in the details
    cached = token_count(prompt_details.get("cached_tokens")) or token_count(
        usage.get("prompt_cache_hit_tokens")
    )
    return usage_block(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        cached,
        usage.get("cost"),
        cache_write=token_count(prompt_details.get("cache_write_tokens")),
        reasoning=token_count(completion_details.get("reasoning_tokens")),
    )


def normalise(result: dict, target: Target) -> dict:
    result["usage"] = _usage(result.get("usage") or {})
    result.setdefault("object", "chat.completion")
    result.setdefault("created", int(time.time()))
    return result


async def chat_at(target: Target, url: str, headers: dict, body: dict) -> dict:
    response = await send(
        target, "POST", url, headers=headers, json_body=request_body(target, body, stream=False)
    )
    return normalise(json_of(target, response), target)


async def stream_at(target: Target, url: str, headers: dict, body: dict) -> AsyncGenerator[dict, None]:
    response = await send(
        target, "POST", url, headers=headers, json_body=request_body(target, body, stream=True), stream=True
    )
    finished = False
    async for _, data in sse_events(target, response):
        if data == "[DONE]":
            finished = True
            break
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            raise upstream_error(target, "unavailable", "stream error", err.get("message", ""))
        usage = chunk.get("usage")
        if usage:
            chunk["usage"] = _usage(usage)  # in the stream's last chunk
        yield chunk
    if not finished:
        raise ProviderError(
            "unavailable",
            f"{target.provider}: the stream ended before it was complete",
            provider=target.provider,
        )


async def chat(target: Target, body: dict) -> dict:
    if RESPONSES_PASSTHROUGH in body and speaks_responses(target.provider, target.protocol):
        return await openai_responses.chat(target, body)
    return await chat_at(target, _url(target, "/chat/completions"), _headers(target), body)


async def stream_chat(target: Target, body: dict) -> AsyncGenerator[dict, None]:
    if RESPONSES_PASSTHROUGH in body and speaks_responses(target.provider, target.protocol):
        async for chunk in openai_responses.stream_chat(target, body):
            yield chunk
        return
    async for chunk in stream_at(target, _url(target, "/chat/completions"), _headers(target), body):
        yield chunk


async def embeddings_at(target: Target, url: str, headers: dict, body: dict) -> dict:
    payload = {k: v for k, v in body.items() if k != "model"}
    payload["model"] = target.model
    result = json_of(target, await send(target, "POST", url, headers=headers, json_body=payload))
    usage = result.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    result["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
    result.setdefault("object", "list")
    result["model"] = result.get("model") or target.model
    return result


async def embeddings(target: Target, body: dict) -> dict:
    return await embeddings_at(target, _url(target, "/embeddings"), _headers(target), body)


async def list_models(target: Target) -> list[str]:
    response = await send(target, "GET", _url(target, "/models"), headers=_headers(target))
    data = json_of(target, response)
    return [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]


async def ollama_tags(base_url: str, api_key: str = "", *, read_timeout: float = 10.0) -> list[str]:
    """The models an Ollama server has pulled (`GET /api/tags` at the server root), as `name:tag`."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[:-3]
    target = Target(
        provider="ollama",
        protocol="openai_compat",
        base_url=root,
        api_key=api_key,
        timeouts=Timeouts(connect=min(5.0, read_timeout), first_byte=read_timeout, idle=read_timeout),
    )
    response = await send(target, "GET", root + "/api/tags", headers=_headers(target))
    data = json_of(target, response)
    return [str(m.get("name") or m.get("model")) for m in data.get("models", []) if isinstance(m, dict)]


__all__ = ["chat", "embeddings", "list_models", "ollama_tags", "stream_chat"]
