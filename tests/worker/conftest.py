"""A real Celery worker (subprocess) on the test database and Redis; tasks are sent, not run eagerly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def celery_worker_process(request, transactional_db, fake_upstream, monkeypatch):
    """Start the Celery worker as deployed (`python -m byok_platform.worker`) against this test run's database and a private Redis queue, with the
    pool the settings choose (threads) or, parametrized indirectly, another one (prefork)."""
    pool = getattr(request, "param", None)
    from byok_platform.celery import app

    db = settings.DATABASES["default"]
    queue = f"test-{os.getpid()}"
    broker = app.conf.broker_url  # the run's Redis; a private queue keeps runs apart
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "DJANGO_SETTINGS_MODULE": "byok_platform.settings",
        "OPENAI_API_KEY": "sk-test-platform",
        "OPENAI_BASE_URL": fake_upstream.url + "/v1",
        "USAGE_DRAIN_INTERVAL": "3600",
        "LOG_LEVEL": "WARNING",
    }
    marker = request.node.get_closest_marker("worker_env")
    if marker is not None:
        env.update(marker.kwargs)
    if pool is not None:
        env["CELERY_WORKER_POOL"] = pool
        env["CELERY_WORKER_CONCURRENCY"] = "2"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "byok_platform.worker",
            "-Q",
            queue,
            "-n",
            f"{queue}@localhost",
            "-l",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    saved = (app.conf.task_always_eager, app.conf.task_default_queue)
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_upstream.url + "/v1")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if app.control.ping(destination=[f"{queue}@localhost"], timeout=1):
                break
            assert proc.poll() is None, f"celery worker exited: {proc.stdout.read() if proc.stdout else ''}"
        else:
            raise RuntimeError("the Celery worker did not answer a ping within 60 s")
        yield proc
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue = saved
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
