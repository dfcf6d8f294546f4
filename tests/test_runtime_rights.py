"""Who sees and changes batch jobs and their results: members their own, owners and admins all, billing none."""

import pytest
from django.test import Client

from llm.models import Job, JobItem
from tenants.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db
OUTPUT = "the-confidential-completion-text"


@pytest.fixture
def people(tenant, make_user):
    made = {"owner": Membership.objects.unscoped().get(tenant=tenant, role="owner")}
    for role in ["admin", "member", "billing"]:
        made[role] = Membership.objects.unscoped().create(
            tenant=tenant, user=make_user(f"{role}@acme.example.com"), role=role
        )
    made["colleague"] = Membership.objects.unscoped().create(
        tenant=tenant, user=make_user("colleague@acme.example.com"), role="member"
    )
    return made


def _client(membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def _job(tenant, membership, status="queued") -> Job:
    job = Job.objects.unscoped().create(
        tenant=tenant, model="default", total=1, status=status, user=membership.user
    )
    JobItem.objects.create(
        job=job,
        index=0,
        request={"messages": [{"role": "user", "content": "hi"}]},
        status="done",
        response={"choices": [{"message": {"content": OUTPUT}}]},
    )
    return job


def _state(job) -> tuple[str, bool]:
    job = Job.objects.unscoped().get(id=job.id)
    return job.status, job.cancel_requested


def test_billing_cannot_read_jobs_or_their_results(tenant, people):
    job = _job(tenant, people["owner"], status="done")
    billing = _client(people["billing"])
    for url in ("/api/llm/jobs", f"/api/llm/jobs/{job.id}"):
        response = billing.get(url)
        assert response.status_code == 403
        assert OUTPUT not in response.content.decode()
    assert billing.post(f"/api/llm/jobs/{job.id}/cancel").status_code == 403


def test_member_cannot_see_or_cancel_someone_elses_job(tenant, people):
    job = _job(tenant, people["colleague"])
    member = _client(people["member"])
    read = member.get(f"/api/llm/jobs/{job.id}")
    assert read.status_code == 404
    assert OUTPUT not in read.content.decode()
    assert member.post(f"/api/llm/jobs/{job.id}/cancel").status_code == 404
    assert member.delete(f"/api/llm/jobs/{job.id}").status_code == 404
    assert member.get("/api/llm/jobs").json() == []
    assert _state(job) == ("queued", False)


def test_member_sees_and_cancels_its_own_job(tenant, people):
    job = _job(tenant, people["member"])
    member = _client(people["member"])
    assert [j["id"] for j in member.get("/api/llm/jobs").json()] == [job.id]
    read = member.get(f"/api/llm/jobs/{job.id}")
    assert read.status_code == 200
    assert OUTPUT in read.content.decode()
    assert member.post(f"/api/llm/jobs/{job.id}/cancel").json()["status"] == "cancelled"


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_see_and_cancel_every_job(tenant, people, role):
    job = _job(tenant, people["member"])
    client = _client(people[role])
    assert job.id in [j["id"] for j in client.get("/api/llm/jobs").json()]
    assert OUTPUT in client.get(f"/api/llm/jobs/{job.id}").content.decode()
    assert client.delete(f"/api/llm/jobs/{job.id}").status_code == 200
    assert _state(job) == ("cancelled", True)
    event = AuditEvent.objects.unscoped().get(action="job.cancel", object_id=str(job.id))
    assert event.actor_user == people[role].user
