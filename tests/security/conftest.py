"""Fixtures of the security tests: fresh in-process memos, a second upstream that records what it receives, and
API clients for a tenant admin (browser session) and a `manage` key."""

from __future__ import annotations

import orjson
import pytest
from rest_framework.test import APIClient

from llm.calls import resolution
from llm.config import catalog, encryption, ssrf
from tenants.models import Membership


def _forget_everything() -> None:
    encryption._data_keys.clear()
    encryption._masters.clear()
    ssrf.clear_dns_cache()
    catalog.forget_memo()
    resolution.clear_route_cache()
    resolution.forget_env()


@pytest.fixture(autouse=True)
def _fresh_memos():
    _forget_everything()
    yield
    _forget_everything()


@pytest.fixture(scope="session")
def _elsewhere_server():
    from tests.fakes.upstream import FakeUpstream

    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def elsewhere(_elsewhere_server):
    """A second fake provider on another port (another origin); `.requests` holds (path, headers, body)."""
    _elsewhere_server.reset()
    return _elsewhere_server


@pytest.fixture
def admin_session(tenant, make_user) -> APIClient:
    """The browser session of a tenant admin (what the pages' scripts use)."""
    user = make_user("admin@acme.example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=user, role="admin")
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture(params=["admin_session", "manage_client"])
def api(request) -> APIClient:
    """Each test runs once as a tenant admin over the session and once with a `manage` key."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def production_ssrf(settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    return settings


class EchoUpstream:
    """A provider that answers every request with an error quoting every header it received (what a careless
    upstream or proxy does). `mode`: "json" (400 with an OpenAI-style error body), "text" (400, plain text, padded
    so that the x-org-token value straddles the 300th character), "stream" (200, an SSE stream whose first event is an error), "models" (404 for a call, and
    a model list made of the header values)."""

    def __init__(self) -> None:
        self.mode = "json"
        self.port = 0
        self.seen: list[dict[str, str]] = []
        self._loop = None
        self._runner = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request):
        from aiohttp import web

        await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen.append(headers)
        echoed = "; ".join(f"{k}: {v}" for k, v in headers.items())
        if self.mode == "models":  # no such model; the list of models is every header value it got
            if request.method == "GET":
                return web.json_response({"object": "list", "data": [{"id": v} for v in headers.values()]})
            return web.json_response(
                {"error": {"message": "model not found", "code": "model_not_found"}}, status=404
            )
        if self.mode == "text":
            return web.Response(
                status=400, text="x" * 283 + " token " + headers.get("x-org-token", "") + " " + echoed
            )
        if self.mode == "stream":
            body = orjson.dumps({"error": {"message": f"stream refused, you sent {echoed}"}})
            return web.Response(status=200, body=b"data: " + body + b"\n\n", content_type="text/event-stream")
        return web.json_response(
            {
                "error": {"message": f"bad request, you sent {echoed}", "type": "invalid_request"},
                "message": f"bad request, you sent {echoed}",
            },
            status=400,
        )

    def start(self) -> EchoUpstream:
        import asyncio
        import threading

        from aiohttp import web

        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the echo upstream did not start")
        return self

    def stop(self) -> None:
        import asyncio

        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def _echo_server():
    server = EchoUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def echo(_echo_server) -> EchoUpstream:
    _echo_server.mode = "json"
    _echo_server.seen.clear()
    return _echo_server
