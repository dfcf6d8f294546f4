"""Assistant thread API: a person's threads, invisible to other users and tenants; validation."""

import pytest
from django.test import Client

from llm.models import Message, Thread
from tenants.models import Membership

pytestmark = pytest.mark.django_db


def _owner_client(tenant) -> Client:
    client = Client()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant, role="owner").user)
    return client


def test_create_rename_list_delete(tenant):
    client = _owner_client(tenant)
    created = client.post("/api/llm/threads", {"title": "Plans"}, content_type="application/json")
    assert created.status_code == 201
    tid = created.json()["id"]
    renamed = client.patch(f"/api/llm/threads/{tid}", {"title": "Q4 plans"}, content_type="application/json")
    assert renamed.json()["title"] == "Q4 plans"
    assert [t["title"] for t in client.get("/api/llm/threads").json()] == ["Q4 plans"]
    assert (
        client.patch(f"/api/llm/threads/{tid}", {"title": " "}, content_type="application/json").status_code
        == 400
    )
    assert client.delete(f"/api/llm/threads/{tid}").status_code == 204
    assert not Thread.objects.unscoped().filter(id=tid).exists()


def test_empty_message_is_a_field_error_and_stores_nothing(tenant):
    client = _owner_client(tenant)
    tid = client.post("/api/llm/threads", {}, content_type="application/json").json()["id"]
    response = client.post(
        f"/api/llm/threads/{tid}/messages", {"content": "  "}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "content" in response.json()
    assert Message.objects.unscoped().filter(thread_id=tid).count() == 0


def test_other_tenant_and_other_user_get_404(tenant, other_tenant, make_user):
    client = _owner_client(tenant)
    tid = client.post(
        "/api/llm/threads", {"title": "secret-thread-title"}, content_type="application/json"
    ).json()["id"]
    other = _owner_client(other_tenant)
    colleague = make_user("colleague@acme.example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=colleague, role="member")
    same_tenant = Client()
    same_tenant.force_login(colleague)
    for c in (other, same_tenant):
        assert c.get(f"/api/llm/threads/{tid}").status_code == 404
        assert c.delete(f"/api/llm/threads/{tid}").status_code == 404
        assert (
            c.post(
                f"/api/llm/threads/{tid}/messages", {"content": "x"}, content_type="application/json"
            ).status_code
            == 404
        )
        assert "secret-thread-title" not in c.get("/api/llm/threads").content.decode()
    assert Thread.objects.unscoped().filter(id=tid).exists()


def test_api_keys_cannot_use_threads(manage_client):
    assert manage_client.get("/api/llm/threads").status_code == 403
