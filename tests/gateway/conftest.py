"""Gateway fixtures: the real ASGI app under uvicorn on a free port, fake providers, configured tenants."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from llm.calls import hot_cache
from llm.limits import budget


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass


@pytest.fixture
def gateway_url(transactional_db, settings):
    """Serve byok_platform.asgi:application with uvicorn in a thread; yields its base URL."""
    from byok_platform.asgi import application
    from llm.calls.resolution import forget_env

    settings.USAGE_DRAIN_INTERVAL = 3600  # tests drain explicitly
    budget.reset_backend()
    hot_cache.clear()
    forget_env()
    port = _free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio"
    )
    server = _Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    budget.reset_backend()
    hot_cache.clear()
    forget_env()


@pytest.fixture
def gw(gateway_url):
    """An httpx client for raw requests to the gateway."""
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        yield client


def drain_events():
    from llm.metering import queue as metering

    metering.flush()
    from llm.models import UsageEvent

    return list(UsageEvent.objects.unscoped().order_by("created_at", "id"))


def reconfigured() -> None:
    """Forget every cached key, limit, route and platform key after a test changed configuration."""
    from llm.calls.resolution import forget_env

    hot_cache.clear()
    forget_env()
