"""Batch-job API validation (runs nothing: a rejected job changes nothing)."""

import pytest

from llm.models import Job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requests": []}, "requests"),
        ({"requests": [{"messages": []}]}, "requests"),
        ({"requests": [{"messages": [{"role": "user", "content": "x"}], "stream": True}]}, "requests"),
        ({"requests": [{"messages": [{"role": "user", "content": "x"}]}], "concurrency": 99}, "concurrency"),
    ],
)
def test_invalid_jobs_are_field_errors(manage_client, tenant, body, field):
    response = manage_client.post("/api/llm/jobs", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Job.objects.unscoped().filter(tenant=tenant).count() == 0


def test_other_tenant_cannot_read_or_cancel_a_job(manage_client, other_client, tenant):
    job = Job.objects.unscoped().create(tenant=tenant, model="default", total=0, status="done")
    assert manage_client.get(f"/api/llm/jobs/{job.id}").status_code == 200
    assert other_client.get(f"/api/llm/jobs/{job.id}").status_code == 404
    assert other_client.post(f"/api/llm/jobs/{job.id}/cancel").status_code == 404
    assert str(job.id) not in str([j["id"] for j in other_client.get("/api/llm/jobs").json()])
