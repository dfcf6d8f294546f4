"""Who drains the usage queue (`USAGE_DRAINERS`): a gateway process not among the drainers leaves its events in Redis
for the worker (the default with Redis), one among them moves them itself; the setting refuses what cannot work."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from llm.limits import budget
from tests.faults.conftest import ROOT, configure_custom_tenant, events_by_request_id, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _call(url: str, key: str) -> str:
    response = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "default", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


@pytest.mark.parametrize("drainers", ["worker", "web"])
def test_a_gateway_process_drains_only_when_it_is_among_the_drainers(
    fake, tenant, make_key, gateway_process, drainers
):
    key = configure_custom_tenant(tenant, make_key, fake.url)
    gateway = gateway_process(USAGE_DRAINERS=drainers)  # USAGE_DRAIN_INTERVAL 0.2 s (service_env)
    request_id = _call(gateway.url, key)
    if drainers == "web":
        wait_for(lambda: request_id in events_by_request_id(), "the gateway to drain its event")
        return
    time.sleep(2)  # ten drain intervals
    assert request_id not in events_by_request_id()
    assert budget.backend().sync_client().xlen(budget.EVENTS_KEY) == 1, "queued for the worker"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"USAGE_DRAINERS": "web,cron"}, "USAGE_DRAINERS: web, worker or both"),
        ({"USAGE_DRAINERS": "worker", "REDIS_URL": ""}, "must include web without REDIS_URL"),
    ],
)
def test_usage_drainers_that_cannot_work_are_refused_at_start(env, message):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "byok_platform.settings", "DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
