"""The gateway's process loads only what the call path uses: no admin, API schema, Stripe or AWS SDK at start."""

import asyncio
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

# Loaded on first use by the pages, the API schema, billing's Stripe calls and the Bedrock adapter, never at start.
NOT_AT_START = (
    "llm.admin",
    "billing.admin",
    "tenants.admin",
    "drf_spectacular.plumbing",
    "stripe",
    "botocore",
    "boto3",
)

PROBE = """
import sys
import byok_platform.asgi  # what uvicorn imports in each web worker
print(",".join(m for m in sys.argv[1:] if m in sys.modules))
"""


def test_the_asgi_entry_point_does_not_import_the_admin_schema_stripe_or_aws():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "byok_platform.settings"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *NOT_AT_START],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "", f"imported at start: {out.stdout.strip()}"


def test_the_admin_still_registers_every_model_once_the_urlconf_loads(client):
    from django.contrib import admin

    client.get("/healthz")  # the first request loads the URLconf, which runs the admin's autodiscovery
    registered = {m._meta.label for m in admin.site._registry}
    assert {"tenants.Tenant", "llm.CatalogModel", "billing.Plan"} <= registered


WORKER_PROBE = """
import sys
import byok_platform.worker  # the worker's entry point (`python -m byok_platform.worker`)
from byok_platform.celery import app
app.loader.import_default_modules()  # what a worker does at start: Django set up, every tasks module imported
print(",".join(m for m in sys.argv[1:] if m in sys.modules))
"""

# Loaded on first use by the tasks that need them (an assistant reply, a batch job, an alert webhook) or never in a
# worker (Celery's other subcommands), so a worker that drains and rolls up usage does not carry them.
NOT_IN_A_WORKER = (
    "byok_platform.urls",
    "llm.pages",
    "billing.pages",
    "llm.admin",
    "drf_spectacular.generators",
    "stripe",
    "botocore",
    "llm.calls.entry",
    "llm.providers",
    "aiohttp",
    "httpx",
    "celery.bin.celery",
    "click_repl",
    "prompt_toolkit",
)


def test_a_celery_worker_loads_neither_the_urlconf_nor_the_pages_nor_the_call_path():
    """Celery's Django fixup would run the system checks at start, loading the URLconf with the admin, the API,
    the schema generator and every page; byok_platform/celery.py turns that off (the checks run at deploy). The
    call path and the HTTP clients load with the first task that makes a call."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "byok_platform.settings"}
    env.pop("CELERY_SKIP_CHECKS", None)
    out = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, *NOT_IN_A_WORKER, "llm.tasks", "billing.tasks"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "llm.tasks,billing.tasks", out.stdout + out.stderr


PROBE_PROBE = """
import asyncio
import sys
import byok_platform.asgi

sent = []


async def send(message):
    sent.append(message)


scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": []}
asyncio.run(byok_platform.asgi.application(scope, None, send))
print(sent[0]["status"], sent[1]["body"].decode(), "byok_platform.urls" in sys.modules)
"""


def test_a_health_probe_does_not_load_the_urlconf():
    """A load balancer probes every web worker: the probe is answered ahead of Django's handler, which would load
    the URLconf, with the admin, the API and every page, into each worker."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "byok_platform.settings"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE_PROBE],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["200", '{"status":"ok"}', "False"], out.stdout + out.stderr


@pytest.mark.django_db(transaction=True)
def test_the_asgi_readiness_probe_checks_the_database_and_redis(settings):
    from django.db import connections

    from byok_platform import asgi
    from llm.sync import run_sync

    async def probe() -> list:
        sent: list = []

        async def send(message):
            sent.append(message)

        await asgi.application(
            {"type": "http", "method": "GET", "path": "/readyz", "headers": []}, None, send
        )
        return sent

    sent = asyncio.run(probe())
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["checks"] == {"database": "ok", "secrets": "ok", "redis": "ok"}

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    sent = asyncio.run(probe())
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["failing"] == ["redis"]
    asyncio.run(run_sync(connections.close_all))  # the pool thread's connection, so the test database can go
