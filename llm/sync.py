"""The gateway's own bounded thread pool for its synchronous work (database reads, DNS, counter seeding).

Not asgiref's default `thread_sensitive=True` executor, which runs all of it on one thread per process, so one
slow lookup (a flood of unknown keys, a cold route with DNS) queued every tenant behind it. Each pool thread
keeps at most one database connection, re-checked before and after each job as Django does per request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections

T = TypeVar("T")
P = ParamSpec("P")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(
                    max_workers=settings.GATEWAY_SYNC_THREADS, thread_name_prefix="gateway-sync"
                )
    return _pool


def _job(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    close_old_connections()  # a connection the database dropped (restart, idle timeout) is replaced
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


# Set by `from_sync()`: the coroutine was started by synchronous code (a Celery task, a view, a command) that
# waits for it, so its sync work belongs on that thread and its database connection (and transaction).
_from_sync: ContextVar[bool] = ContextVar("llm_sync_from_sync", default=False)


async def run_sync(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run fn in the gateway's pool (with the caller's context variables) and await its result; for a coroutine
    driven by synchronous code, on that code's own thread instead."""
    if _from_sync.get():
        return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
    return await sync_to_async(_job, thread_sensitive=False, executor=pool())(fn, args, kwargs)


# Awaited when a coroutine run by `from_sync` ends in an event loop made for it (a Celery task, a command, a view
# under WSGI): what is pooled per loop (the upstream HTTP client) is closed with the loop, not left to the garbage
# collector. Registered by the modules that pool (llm.providers), so this leaf imports nothing of llm.
own_loop_exit_hooks: list[Callable[[], Awaitable[None]]] = []


def from_sync(coro_fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run an async function from synchronous code and return its result (see `_from_sync`). Under an ASGI server
    it runs on the server's loop, whose pools live on; otherwise on a loop of its own, closed down after."""
    from asgiref.sync import SyncToAsync, async_to_sync

    server_loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    own_loop = server_loop is None or not server_loop.is_running()

    async def main() -> T:
        _from_sync.set(True)
        try:
            return await coro_fn(*args, **kwargs)
        finally:
            if own_loop:
                for hook in own_loop_exit_hooks:
                    await hook()

    return async_to_sync(main)()


def shutdown() -> None:
    """Close every pool thread's database connection, then the pool (server shutdown, tests)."""
    global _pool
    with _lock:
        current, _pool = _pool, None
    if current is None:
        return
    threads = len(getattr(current, "_threads", ()))
    barrier = threading.Barrier(threads) if threads else None

    def close() -> None:
        connections.close_all()
        if barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)  # each thread takes exactly one of these jobs

    for _ in range(threads):
        current.submit(close)
    current.shutdown(wait=True)
