"""The gateway's own bounded thread pool for its synchronous work (database reads, DNS, counter seeding).

Not asgiref's default `thread_sensitive=True` executor, which runs all of it on one thread per process, so one
slow lookup (a flood of unknown keys, a cold route with DNS) queued every tenant behind it. Each pool thread
keeps at most one database connection, re-checked before and after each job as Django does per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=settings.GATEWAY_SYNC_THREADS,
                                           thread_name_prefix="gateway-sync")
    return _pool


def _job(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    close_old_connections()  # a connection the database dropped (restart, idle timeout) is replaced
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run fn in the gateway's pool (with the caller's context variables) and await its result."""
    return await sync_to_async(_job, thread_sensitive=False, executor=pool())(fn, args, kwargs)


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
