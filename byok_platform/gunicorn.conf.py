"""Gunicorn settings for production: uvicorn's ASGI worker, forked from a master that loaded the app first.

`preload_app` imports Django and the gateway once in the master; the workers are forked from it and share those
pages copy-on-write, so each worker costs its own data only (uvicorn's own `--workers` starts each worker fresh).
"""

import contextlib
import ctypes
import gc
import importlib
import os

# As Python's documentation advises for a process that forks workers (`gc.freeze`): no collection in the master
# while it loads the app, so the objects it frees do not leave holes in pages that the workers would then fill
# (and so copy) with their own. Collection resumes once the app is frozen (`when_ready`), before any fork.
gc.disable()

wsgi_app = "byok_platform.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
preload_app = True
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104 (inside a container)
accesslog = None
# X-Forwarded-* from these addresses only (the load balancer in front); uvicorn's worker reads the same setting.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
graceful_timeout = 30
timeout = 120


# What each worker would otherwise import for itself, after the fork: uvicorn's event loop, HTTP protocol and
# lifespan, and on its first call the upstream transport and the Redis cache backend. Imported in the master, they
# are shared with the workers like the app (about 4 MB a worker).
WORKER_MODULES = (
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.lifespan.on",
    "httpx_aiohttp",
    "django.core.cache.backends.redis",
    "encodings.idna",
)


def when_ready(server: object) -> None:
    """The app is loaded, no worker forked yet: import what the workers will, then move every object made so far
    out of the collector's reach, so collections in the workers do not write to (and so copy) the pages they share
    with the master, and give the allocator's free pages back, so that no worker copies them."""
    for name in WORKER_MODULES:
        with contextlib.suppress(ImportError):  # an optional speed-up (uvloop, httptools) not installed
            importlib.import_module(name)
    gc.freeze()
    gc.enable()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)
