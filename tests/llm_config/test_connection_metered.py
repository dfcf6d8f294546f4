"""A connection test of the platform's own keys is a call like any other: admitted under the same caps and
budgets, priced, metered once."""

from __future__ import annotations

import pytest

from llm.models import UsageEvent

pytestmark = pytest.mark.django_db
URL = "/api/llm/test-connection"
PLATFORM = {"mode": "platform", "model": "openai:gpt-5-mini"}


@pytest.fixture
def paying(tenant, fake, monkeypatch):
    from billing.plans import assign_plan
    from tests.gateway.conftest import reconfigured

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    assign_plan(tenant=tenant, plan_slug="enterprise")
    reconfigured()
    return tenant


def test_a_platform_connection_test_is_priced_and_metered_once(paying, manage_client):
    body = manage_client.post(URL, PLATFORM, format="json").json()
    assert body["ok"] is True, body
    from llm.metering import queue as metering

    metering.flush()
    (event,) = UsageEvent.objects.unscoped().filter(tenant=paying)
    assert event.request_type == "test"
    assert event.mode == "platform"
    assert event.cost_usd > 0
    assert event.tcu > 0


def test_a_platform_connection_test_is_refused_past_the_hard_cap(paying, manage_client):
    assert (
        manage_client.put("/api/billing/caps", {"warn_tcu": 1, "hard_tcu": 1}, format="json").status_code
        == 200
    )
    assert manage_client.post(URL, PLATFORM, format="json").json()["ok"] is True  # spends past the cap of 1
    from llm.metering import queue as metering

    metering.flush()
    refused = manage_client.post(URL, PLATFORM, format="json").json()
    assert refused["ok"] is False, refused
    assert refused["error"]["kind"] == "cap", refused
    assert "hard cap" in refused["error"]["message"].lower()


def test_a_platform_connection_test_respects_the_keys_spend_limit(paying, make_key, fake):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(paying, spend_limit_tcu=1)}")
    assert client.post(URL, PLATFORM, format="json").json()["ok"] is True
    from llm.metering import queue as metering

    metering.flush()
    refused = client.post(URL, PLATFORM, format="json").json()
    assert refused["ok"] is False, refused
    assert "key" in refused["error"]["message"].lower(), refused


def test_a_batch_job_spends_under_its_keys_monthly_limit(
    paying, make_key, django_capture_on_commit_callbacks
):
    """A key refused on /v1 past its spend limit is refused the same way in a batch job (Celery runs eagerly here)."""
    from rest_framework.test import APIClient

    from llm.metering import queue as metering
    from llm.models import Job

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(paying, spend_limit_tcu=1)}")
    items = [{"messages": [{"role": "user", "content": f"item {i}"}]} for i in range(10)]
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            "/api/llm/jobs",
            {"model": "openai:gpt-5-mini", "requests": items, "concurrency": 1},
            format="json",
        )
    assert created.status_code in (200, 201, 202), created.content
    job = Job.objects.unscoped().get(pk=created.json()["id"])
    metering.flush()
    assert job.done_count < 10, (job.done_count, job.failed_count)
    assert job.failed_count > 0, (job.done_count, job.failed_count)
    failed = job.items.filter(status="failed").first()
    assert failed.error["status"] == 402
    assert failed.error["code"] == "key_budget_reached"
