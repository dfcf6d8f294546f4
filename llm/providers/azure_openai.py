"""Azure OpenAI: OpenAI's wire format on deployment URLs with an `api-key` header and an api-version."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from llm.providers import openai_compat
from llm.providers.base import Target

DEFAULT_API_VERSION = "2024-10-21"


def _url(target: Target, kind: str) -> str:
    deployment = target.options.get("deployment") or target.model
    version = target.options.get("api_version") or DEFAULT_API_VERSION
    return f"{target.base_url.rstrip('/')}/openai/deployments/{deployment}/{kind}?api-version={version}"


def _headers(target: Target) -> dict:
    return {"api-key": target.api_key}


async def chat(target: Target, body: dict) -> dict:
    return await openai_compat.chat_at(target, _url(target, "chat/completions"), _headers(target), body)


async def stream_chat(target: Target, body: dict) -> AsyncGenerator[dict, None]:
    async for chunk in openai_compat.stream_at(
        target, _url(target, "chat/completions"), _headers(target), body
    ):
        yield chunk


async def embeddings(target: Target, body: dict) -> dict:
    return await openai_compat.embeddings_at(target, _url(target, "embeddings"), _headers(target), body)


async def list_models(target: Target) -> list[str]:
    return [target.options.get("deployment") or target.model]
