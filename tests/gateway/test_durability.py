"""No call is lost: SIGKILL the web worker under load; every answered call has exactly one UsageEvent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.gateway.conftest import _free_port, drain_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _serve(port: int, fake_url: str) -> subprocess.Popen:
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "DJANGO_SETTINGS_MODULE": "byok_platform.settings",
        "DEBUG": "true",
        "USAGE_DRAIN_INTERVAL": "3600",
        "OPENAI_API_KEY": "sk-test-platform",
        "OPENAI_BASE_URL": fake_url + "/v1",
        "LOG_LEVEL": "ERROR",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "byok_platform.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_under_load_loses_no_answered_call(fake, tenant, make_key):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    key = make_key(tenant, scopes=["gateway"])
    port = _free_port()
    proc = _serve(port, fake.url)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway subprocess did not start"
            time.sleep(0.1)

        received: list[str] = []
        refused: Counter = Counter()
        lock = threading.Lock()
        stop = threading.Event()

        def worker() -> None:
            with httpx.Client(base_url=base, timeout=5) as client:
                for _ in range(200):
                    if stop.is_set():
                        return
                    try:
                        r = client.post(
                            "/v1/chat/completions",
                            headers={"Authorization": f"Bearer {key}"},
                            json={
                                "model": "openai:gpt-5-mini",
                                "messages": [{"role": "user", "content": "hi"}],
                            },
                        )
                    except httpx.HTTPError:
                        return  # the server was killed under us
                    with lock:
                        if r.status_code == 200:
                            received.append(r.headers["x-request-id"])
                        else:
                            refused[r.status_code] += 1

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker) for _ in range(8)]
            deadline = time.monotonic() + 60
            while len(received) < 60 and time.monotonic() < deadline and not all(f.done() for f in futures):
                time.sleep(0.01)
            assert len(received) >= 60, f"only {len(received)} answered calls (refused: {dict(refused)})"
            proc.send_signal(signal.SIGKILL)
            stop.set()
            for f in futures:
                f.result()
    finally:
        proc.kill()
        proc.wait()

    assert len(received) >= 60
    events = drain_events()
    counts = Counter(e.request_id for e in events)
    missing = [rid for rid in received if counts[rid] != 1]
    assert not missing, f"{len(missing)} answered calls without exactly one event"
    assert all(c == 1 for c in counts.values())
    upstream_calls = sum(1 for r in fake.requests if r[0].endswith("/chat/completions"))
    assert upstream_calls >= len(received)
