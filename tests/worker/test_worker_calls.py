"""Assistant replies and batch jobs run by a real Celery worker, through the same router and metering."""

import os

import pytest

from llm.metering import queue as metering
from llm.models import Job, Message, UsageEvent
from tests.worker.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pro_tenant(tenant):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


def test_assistant_reply_is_produced_by_the_worker(celery_worker_process, pro_tenant):
    from llm.runtime.assistant import message_post, thread_create
    from tenants.models import Membership

    owner = Membership.objects.unscoped().get(tenant=pro_tenant, role="owner").user
    thread = thread_create(tenant=pro_tenant, user=owner, model="openai:gpt-5-mini")
    _, reply = message_post(thread=thread, content="Hello?")
    done = wait_for(
        lambda: Message.objects.unscoped().filter(id=reply.id, status__in=["done", "error"]).first()
    )
    assert done.status == "done", done.error
    assert done.content.startswith("Hello from fake")
    assert (done.input_tokens, done.output_tokens) == (12, 5)
    metering.flush()
    event = UsageEvent.objects.unscoped().get(request_id=done.request_id)
    assert event.request_type == "assistant"
    assert event.user_id == owner.id


@pytest.mark.parametrize(
    "celery_worker_process", [None, "prefork"], indirect=True, ids=["threads", "prefork"]
)
def test_batch_job_runs_every_request_once(celery_worker_process, pro_tenant, manage_client, request):
    from byok_platform.celery import app

    stats = app.control.inspect(destination=[f"test-{os.getpid()}@localhost"], timeout=5).stats() or {}
    (pool,) = [worker["pool"]["implementation"] for worker in stats.values()]
    expected = "prefork" if request.node.callspec.params["celery_worker_process"] else "thread"
    assert expected in pool  # the settings' default is one process with threads; prefork stays supported
    body = {
        "model": "openai:gpt-5-mini",
        "concurrency": 2,
        "requests": [{"messages": [{"role": "user", "content": f"item {i}"}]} for i in range(6)],
    }
    created = manage_client.post("/api/llm/jobs", body, format="json")
    assert created.status_code == 202, created.content
    job_id = created.json()["id"]
    wait_for(lambda: Job.objects.unscoped().filter(id=job_id, status="done").exists())
    result = manage_client.get(f"/api/llm/jobs/{job_id}").json()
    assert result["done"] == 6
    assert result["failed"] == 0
    assert result["progress"] == 1
    assert [r["index"] for r in result["results"]] == list(range(6))
    assert all(r["response"]["choices"][0]["message"]["content"] for r in result["results"])
    metering.flush()
    assert UsageEvent.objects.unscoped().filter(tenant=pro_tenant, request_type="job").count() == 6


def test_cancelled_job_stops(celery_worker_process, pro_tenant, manage_client):
    body = {
        "model": "openai:gpt-5-mini",
        "concurrency": 1,
        "requests": [{"messages": [{"role": "user", "content": "x"}]} for _ in range(300)],
    }
    job_id = manage_client.post("/api/llm/jobs", body, format="json").json()["id"]
    assert manage_client.post(f"/api/llm/jobs/{job_id}/cancel").status_code == 200
    job = wait_for(lambda: Job.objects.unscoped().filter(id=job_id, status="cancelled").first())
    assert job.done_count < 300
