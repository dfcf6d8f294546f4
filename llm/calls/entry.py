"""Calls made outside the HTTP gateway (assistant replies, batch jobs): the same router, caps and metering."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypedDict, TypeVar

from llm.calls.admission import CallContext, resolve
from llm.calls.call import Call
from llm.calls.checks import check_chat
from llm.calls.errors import GatewayError
from llm.sync import from_sync

if TYPE_CHECKING:
    from llm.metering.pricing import Usage

T = TypeVar("T")


class StreamedReply(TypedDict):
    """What `chat_streamed` returns: the whole text, the call's metered usage and the model that answered."""

    content: str
    usage: Usage | None
    model: str


async def chat_once(ctx: CallContext, body: dict) -> dict:
    body = {**body, "model": body.get("model") or "default"}
    check_chat(body)  # the same checks as /v1: a job item is a request like any other
    route = await resolve(ctx, body["model"])
    call = Call(ctx, route, body)
    await call.start()
    try:
        return await call.complete()
    finally:
        await call.abort()  # settles only a call nothing else settled (an unexpected exception)


async def chat_streamed(
    ctx: CallContext, body: dict, on_text: Callable[[str], Awaitable[None] | None]
) -> StreamedReply:
    """Stream a reply, calling on_text with the text so far; returns {"content", "usage", "model"}."""
    body = {**body, "model": body.get("model") or "default"}
    check_chat(body)
    route = await resolve(ctx, body["model"])
    call = Call(ctx, route, body)
    await call.start()
    parts: list[str] = []
    stream = call.stream()
    try:
        async for chunk in stream:
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    parts.append(piece)
                    result = on_text("".join(parts))
                    if asyncio.iscoroutine(result):
                        await result
    finally:
        await stream.aclose()  # a consumer that failed mid-way closes the upstream and meters what was sent
        await call.abort()
    usage = call.usage
    return {"content": "".join(parts), "usage": usage, "model": usage.model if usage else ""}


def error_text(exc: Exception) -> str:
    if isinstance(exc, GatewayError):
        return exc.message
    return "The call failed unexpectedly; try again."


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine from synchronous code (a Celery task or a management command).

    Through async_to_sync rather than asyncio.run, with the router's sync work on the calling thread
    (`sync.from_sync`): its database work then uses the caller's connection, which Celery and Django close after
    the task or request, and sees the caller's transaction.
    """

    async def main() -> T:
        return await coro

    return from_sync(main)
