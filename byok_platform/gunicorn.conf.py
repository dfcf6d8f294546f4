"""Gunicorn settings for production: uvicorn's ASGI worker, forked from a master that loaded the app first.

`preload_app` imports Django and the gateway once in the master; the workers are forked from it and share those
pages copy-on-write, so each worker costs its own data only (uvicorn's own `--workers` starts each worker fresh).
"""

import os

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


def when_ready(server: object) -> None:
    """The app is loaded, no worker forked yet: move every object made so far out of the collector's reach, so
    collections in the workers do not write to (and so copy) the pages they share with the master."""
    import gc

    gc.collect()
    gc.freeze()
