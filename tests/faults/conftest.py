"""Fault-test fixtures: real gateway processes (uvicorn subprocesses), a private Redis, a TCP proxy to PostgreSQL.

Nothing here touches the shared services beyond this run's own test database and key prefix: the Redis that is
killed and restarted is a private `redis-server` on a free port, and PostgreSQL is made unreachable by cutting a
proxy that only the gateway process under test dials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 30.0,
    every: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> object:
    """Poll until predicate() is truthy; fail (naming what, and detail() if given) after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{detail()}" if detail else "")
            )
        time.sleep(every)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def database_url(host: str | None = None, port: int | None = None) -> str:
    """This run's test database (pytest-django renamed NAME already), optionally through another address."""
    db = settings.DATABASES["default"]
    return (
        f"postgres://{db['USER']}@{host or db['HOST'] or '127.0.0.1'}:{port or db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


def service_env(**overrides: str) -> dict[str, str]:
    """The environment of a gateway or drainer process of this run: same test database and key prefix."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        {
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
            "DJANGO_SETTINGS_MODULE": "byok_platform.settings",
            "DEBUG": "true",
            "ALLOW_PRIVATE_ENDPOINTS": "true",
            "USAGE_DRAIN_INTERVAL": "0.2",
            "USAGE_DRAINERS": "web",  # these processes drain (their lifespan's loop), as in the embedded mode
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(overrides)
    return env


class GatewayProcess:
    """`byok_platform.asgi:application` in its own process (its lifespan runs the drain loop): under uvicorn, or
    under gunicorn with the production configuration (`server="gunicorn"`: preloaded app, forked uvicorn workers)."""

    def __init__(self, log_dir: Path, server: str = "uvicorn", **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"gateway-{self.port}.log"
        self._log_file = self.log.open("wb")
        if server == "gunicorn":
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "byok_platform.asgi:application",
                "--config",
                "byok_platform/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
            ]
        else:
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "byok_platform.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=service_env(**env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(self._healthy, "the gateway process to answer /healthz", timeout=60, every=0.1)
        except AssertionError:
            self.stop()
            raise AssertionError(f"gateway process did not start:\n{_log_tail(self.log)}") from None

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"gateway process exited with {self.proc.returncode}:\n{_log_tail(self.log)}"
            )
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self) -> str:
        return _log_tail(self.log)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM: the lifespan's last drain), SIGKILL if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log_file.close()


@pytest.fixture
def gateway_process(tmp_path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateway processes with extra environment; every one is stopped after the test."""
    started: list[GatewayProcess] = []

    def start(server: str = "uvicorn", **env: str) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path, server, **env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


class PrivateRedis:
    """A redis-server of this test alone, on a free port, with AOF as production runs it (docker-compose)."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, f"the private Redis on port {self.port}", timeout=30)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            with contextlib.closing(self.client()) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    yield server
    server.stop()


class TcpProxy:
    """A TCP proxy (asyncio, in a thread) that can be cut. Cut, it drops every open connection and then either
    refuses new ones (`refuse`: nothing listens, as when the database host is down) or accepts them and never
    answers (`blackhole`: as behind a network partition). Restored, it forwards on the same port again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._blackhole = False
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="pg-proxy")
        self._thread.start()
        self.restore()

    def _run(self, coro) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._blackhole:
            self._writers.add(client_writer)
            try:
                while await client_reader.read(65536):
                    pass  # swallowed: no answer ever comes
            except (ConnectionError, OSError):
                pass
            finally:
                self._writers.discard(client_writer)
                client_writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer)
            )
        finally:
            self._writers -= {client_writer, upstream_writer}

    async def _listen(self) -> None:
        self._drop_all()  # connections held by a black hole end (reset) when the path is back
        self._blackhole = False
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as when the database host goes away
        self._writers.clear()

    async def _cut(self, mode: str) -> None:
        if mode == "blackhole":
            self._blackhole = True
        elif self._server is not None:
            self._server.close()
            self._server = None
        self._drop_all()

    def restore(self) -> None:
        self._run(self._listen())

    def cut(self, mode: str = "refuse") -> None:
        assert mode in ("refuse", "blackhole")
        self._run(self._cut(mode))

    def close(self) -> None:
        self.cut("refuse")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    db = settings.DATABASES["default"]
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    yield proxy
    proxy.close()


def configure_custom_tenant(tenant, make_key, fake_url: str) -> str:
    """An enterprise tenant (no request limits) in custom mode on the fake OpenAI-compatible server, priced so
    that calls reserve TCU; returns a gateway key."""
    from rest_framework.test import APIClient

    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(tenant, scopes=['manage'])}")
    saved = client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "gpt-fake",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": fake_url + "/v1",
                "input_usd_per_mtok": 1,
                "output_usd_per_mtok": 2,
            },
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    return make_key(tenant, scopes=["gateway"])


def events_by_request_id() -> dict[str, int]:
    """UsageEvent rows in PostgreSQL, counted per request id (read directly, not through any gateway)."""
    from collections import Counter

    from llm.models import UsageEvent

    return dict(Counter(UsageEvent.objects.unscoped().values_list("request_id", flat=True)))


class Load:
    """A few client threads calling the gateway until stopped (each call bounded by the client's timeout, the
    count bounded too). Every outcome is kept with the phase the test was in when the call was sent."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        workers: int = 4,
        max_calls: int = 3000,
        pause: float = 0.01,
        body: dict | None = None,
    ):
        self.url, self.key, self.pause, self.max_calls = url, key, pause, max_calls
        self.body = body or {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
        self.phase = "start"
        self.results: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        with httpx.Client(
            base_url=self.url, timeout=20, headers={"Authorization": f"Bearer {self.key}"}
        ) as client:
            while not self._stop.is_set() and len(self.results) < self.max_calls:
                phase = self.phase
                outcome: dict = {"phase": phase}
                try:
                    response = client.post("/v1/chat/completions", json=self.body)
                except httpx.HTTPError as exc:  # a hang (client timeout) or a dropped connection
                    outcome.update(status=None, error=f"{exc.__class__.__name__}: {exc}")
                else:
                    outcome.update(
                        status=response.status_code,
                        rid=response.headers.get("x-request-id"),
                        body=response.text[:500],
                    )
                with self._lock:
                    self.results.append(outcome)
                time.sleep(self.pause)

    def count(self, phase: str, status: int) -> int:
        with self._lock:
            return sum(1 for r in self.results if r["phase"] == phase and r["status"] == status)

    def summary(self) -> str:
        """Outcomes per phase and status, with one example of each (for failure messages)."""
        from collections import Counter

        with self._lock:
            results = list(self.results)
        seen: dict[tuple, dict] = {}
        for r in results:
            seen.setdefault((r["phase"], r["status"]), r)
        counts = Counter((r["phase"], r["status"]) for r in results)
        return "\n".join(
            f"{phase}/{status}: {n}, e.g. {str(seen[(phase, status)].get('body') or seen[(phase, status)].get('error'))[:300]}"
            for (phase, status), n in counts.items()
        )

    def stop(self) -> list[dict]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a client thread is stuck"
        return list(self.results)
