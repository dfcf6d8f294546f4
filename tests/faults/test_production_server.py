"""The production image's server (Dockerfile: gunicorn with byok_platform/gunicorn.conf.py, the app preloaded and
uvicorn workers forked from it) serves the gateway and the pages, meters every call, and stops cleanly."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from django.db.models import Sum

from llm.metering import queue as metering
from llm.models import UsageEvent
from tests.faults.conftest import configure_custom_tenant, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_gunicorn_with_preloaded_app_serves_meters_and_stops(fake, tenant, make_key, gateway_process):
    key = configure_custom_tenant(tenant, make_key, fake.url)
    gateway = gateway_process(server="gunicorn", WEB_CONCURRENCY="2")
    wait_for(lambda: len(_children(gateway.proc.pid)) == 2, "two forked workers", timeout=30)

    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        answers = [
            client.post(
                "/v1/chat/completions",
                json={"model": "default", "messages": [{"role": "user", "content": f"hi {i}"}]},
            )
            for i in range(12)
        ]
        models = client.get("/v1/models")
        login_page = client.get("/login/")
        admin_login = client.get("/admin/login/")
    assert [a.status_code for a in answers] == [200] * 12
    assert models.status_code == 200
    # Django's side in a forked worker: the URLconf, and the admin registered by its autodiscovery there.
    assert login_page.status_code == 200
    assert admin_login.status_code == 200

    ids = {a.headers["x-request-id"] for a in answers}
    workers = set(_children(gateway.proc.pid))
    gateway.proc.send_signal(signal.SIGTERM)  # graceful: each worker's lifespan drains what it queued
    gateway.proc.wait(timeout=30)
    assert gateway.proc.returncode == 0, gateway.log_tail()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers), "a worker outlived the master"

    metering.flush()
    events = UsageEvent.objects.unscoped().filter(tenant_id=tenant.id)
    assert set(events.values_list("request_id", flat=True)) == ids, "each call metered exactly once"
    assert (events.aggregate(t=Sum("tcu"))["t"] or 0) > 0
