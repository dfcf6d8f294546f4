"""The Celery worker drains the usage queue every USAGE_DRAIN_INTERVAL seconds (`USAGE_DRAINERS`, the default with
Redis): events a web process queued land in PostgreSQL with no beat and no drain in the web process."""

import time

import pytest

from llm.limits import budget
from llm.metering import queue as metering
from llm.metering.pricing import Usage
from llm.models import UsageEvent
from tests.worker.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _queue(tenant, request_id: str) -> None:
    usage = Usage(
        request_id=request_id,
        tenant_id=tenant.id,
        provider="openai",
        model="openai:gpt-5-mini",
        mode="platform",
        input_tokens=12,
        output_tokens=5,
    )
    budget.backend().sync_client().xadd(budget.EVENTS_KEY, {"e": usage.to_json()})


@pytest.mark.worker_env(USAGE_DRAIN_INTERVAL="0.2")
def test_the_worker_drains_the_queue_by_itself(celery_worker_process, tenant):
    _queue(tenant, "req-worker-drain-1")
    event = wait_for(
        lambda: UsageEvent.objects.for_tenant(tenant).filter(request_id="req-worker-drain-1").first(),
        timeout=15,
    )
    assert (event.input_tokens, event.output_tokens, event.mode) == (12, 5, "platform")
    _queue(tenant, "req-worker-drain-2")  # and keeps doing so
    wait_for(lambda: UsageEvent.objects.for_tenant(tenant).filter(request_id="req-worker-drain-2").exists())
    assert UsageEvent.objects.for_tenant(tenant).count() == 2
    assert budget.backend().sync_client().xlen(budget.EVENTS_KEY) == 0


@pytest.mark.worker_env(USAGE_DRAIN_INTERVAL="0.2", USAGE_DRAINERS="web")
def test_a_worker_not_among_the_drainers_leaves_the_queue_alone(celery_worker_process, tenant):
    _queue(tenant, "req-worker-drain-3")
    time.sleep(2)  # ten of the intervals a drainer would have used
    assert not UsageEvent.objects.for_tenant(tenant).exists()
    metering.flush()  # what a web drainer (or beat's task) does
    assert UsageEvent.objects.for_tenant(tenant).filter(request_id="req-worker-drain-3").exists()
