"""The tenant REST API for agents, keys and audit; key authentication; roles; management commands."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.audit import SYSTEM
from tenants.keys import apikey_create, hash_key, key_info
from tenants.models import Agent, ApiKey, AuditEvent, Membership, Tenant, User

pytestmark = pytest.mark.django_db


def test_create_and_list_agents_with_a_manage_key(manage_client):
    created = manage_client.post("/api/agents", {"slug": "support-bot", "name": "Support"}, format="json")
    assert created.status_code == 201, created.content
    listed = manage_client.get("/api/agents")
    assert [a["slug"] for a in listed.json()] == ["support-bot"]


def test_duplicate_agent_slug_is_a_field_error_and_changes_nothing(manage_client, tenant):
    manage_client.post("/api/agents", {"slug": "bot"}, format="json")
    again = manage_client.post("/api/agents", {"slug": "bot", "name": "Other"}, format="json")
    assert again.status_code == 400
    assert "slug" in again.json()
    assert Agent.objects.unscoped().filter(tenant=tenant).count() == 1


def test_bad_agent_slug_is_rejected(manage_client):
    response = manage_client.post("/api/agents", {"slug": "Not A Slug!"}, format="json")
    assert response.status_code == 400
    assert "slug" in response.json()


def test_missing_key_is_401_and_garbage_key_is_401():
    client = APIClient()
    assert client.get("/api/agents").status_code in (401, 403)
    client.credentials(HTTP_AUTHORIZATION="Bearer byok-not-a-real-key-at-all-000000000")
    assert client.get("/api/agents").status_code == 401


def test_gateway_only_key_cannot_use_the_manage_api(tenant, make_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(tenant, scopes=['gateway'])}")
    response = client.get("/api/agents")
    assert response.status_code == 403
    assert "manage" in response.json()["detail"]


def test_revoked_key_is_refused_at_once(manage_client, tenant, make_key):
    raw = make_key(tenant)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/agents").status_code == 200  # now cached
    key_id = ApiKey.objects.unscoped().get(key_hash=hash_key(raw)).id
    assert manage_client.delete(f"/api/keys/{key_id}").status_code == 200
    assert client.get("/api/agents").status_code == 401


def test_expired_key_is_refused(tenant):
    key, raw = apikey_create(
        tenant=tenant,
        actor=SYSTEM,
        name="soon",
        scopes=["manage"],
        expires_at=timezone.now() + timedelta(seconds=60),
    )
    ApiKey.objects.unscoped().filter(id=key.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/agents").status_code == 401


def test_created_key_is_shown_once_and_only_hashed(manage_client, tenant, agent):
    response = manage_client.post(
        "/api/keys", {"name": "ci", "scopes": ["gateway"], "agent": agent.slug}, format="json"
    )
    assert response.status_code == 201
    raw = response.json()["key"]
    assert raw.startswith("byok-")
    assert len(raw) >= 5 + 43
    assert response.json()["agent"] == agent.slug
    stored = ApiKey.objects.unscoped().get(id=response.json()["id"])
    assert raw not in {stored.key_hash, stored.prefix, stored.name}
    listing = manage_client.get("/api/keys").content.decode()
    assert raw not in listing
    assert stored.last4 in listing
    detail = manage_client.get(f"/api/keys/{stored.id}").json()
    assert "key" not in detail


def test_key_for_another_tenants_agent_is_refused_like_a_missing_one(manage_client, other_tenant):
    from tenants.services import agent_create

    agent_create(tenant=other_tenant, actor=SYSTEM, slug="theirs")
    theirs = manage_client.post("/api/keys", {"name": "x", "agent": "theirs"}, format="json")
    missing = manage_client.post("/api/keys", {"name": "x", "agent": "nobody"}, format="json")
    assert theirs.status_code == missing.status_code == 400
    assert theirs.json() == missing.json()


def test_unknown_scope_is_a_field_error(manage_client, tenant):
    response = manage_client.post("/api/keys", {"name": "x", "scopes": ["root"]}, format="json")
    assert response.status_code == 400
    assert "scopes" in response.json()
    assert ApiKey.objects.unscoped().filter(tenant=tenant, name="x").count() == 0


def test_key_cache_is_used_after_first_lookup(tenant, django_assert_num_queries):
    _, raw = apikey_create(tenant=tenant, actor=SYSTEM, name="k", scopes=["gateway"])
    assert key_info(raw) is not None
    with django_assert_num_queries(0):
        assert key_info(raw).tenant_id == tenant.id


def test_member_role_cannot_manage_keys_over_the_session(client, tenant, make_user):
    member = make_user("member@acme.example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=member, role="member")
    client.force_login(member)
    assert client.get("/api/keys").status_code == 403
    assert client.get("/api/agents").status_code == 200
    assert client.post("/api/agents", {"slug": "x"}, content_type="application/json").status_code == 403


def test_session_writes_need_csrf(tenant, make_user):
    from django.test import Client

    owner = Membership.objects.unscoped().get(tenant=tenant, role="owner").user
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post("/api/agents", {"slug": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_changes_are_audited_without_secrets(manage_client, tenant):
    manage_client.post("/api/agents", {"slug": "bot"}, format="json")
    created = manage_client.post("/api/keys", {"name": "audited"}, format="json").json()
    manage_client.delete(f"/api/keys/{created['id']}")
    actions = list(AuditEvent.objects.unscoped().filter(tenant=tenant).values_list("action", flat=True))
    assert {"agent.create", "apikey.create", "apikey.revoke"} <= set(actions)
    audit = manage_client.get("/api/audit").content.decode()
    assert created["key"] not in audit
    assert "apikey.revoke" in audit


def test_schema_and_docs_are_served(manage_client):
    schema = manage_client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert ("/api/agents/{slug}" in paths and "/api/keys/{key_id}" in paths) or "/api/keys/{id}" in paths
    docs = manage_client.get("/api/docs/")
    assert docs.status_code == 200
    # Swagger UI comes from our own static files (drf-spectacular-sidecar), never from a CDN.
    html = docs.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn.jsdelivr.net" not in html
    assert "https://" not in docs.headers["Content-Security-Policy"]


def test_createtenant_creates_tenant_and_owner_and_prints_slug(capsys):
    call_command(
        "createtenant", "initech", "--owner", "boss@initech.example.com", "--password", "pw-long-enough-1"
    )
    assert capsys.readouterr().out.strip().splitlines()[-1] == "initech"
    tenant = Tenant.objects.get(slug="initech")
    owner = User.objects.get(email="boss@initech.example.com")
    assert owner.check_password("pw-long-enough-1")
    assert Membership.objects.unscoped().get(tenant=tenant, user=owner).role == "owner"


def test_createtenant_refuses_a_duplicate_slug(tenant):
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "createtenant", tenant.slug, "--owner", "x@example.com", "--password", "pw-long-enough-1"
        )


def test_createapikey_prints_the_key_alone_on_the_last_line(tenant, agent, capsys):
    call_command(
        "createapikey", tenant.slug, "--name", "ci", "--scopes", "gateway,manage", "--agent", agent.slug
    )
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    assert raw.startswith("byok-")
    assert " " not in raw
    info = key_info(raw)
    assert info.agent_id == agent.id
    assert set(info.scopes) == {"gateway", "manage"}


def test_createapikey_with_another_tenants_agent_fails(tenant, other_tenant):
    from tenants.services import agent_create

    agent_create(tenant=other_tenant, actor=SYSTEM, slug="theirs")
    with pytest.raises(CommandError, match="No agent"):
        call_command("createapikey", tenant.slug, "--agent", "theirs")
    assert ApiKey.objects.unscoped().filter(tenant=tenant).count() == 0


def test_a_key_name_in_use_is_a_field_error_and_changes_nothing(manage_client, tenant):
    first = manage_client.post("/api/keys", {"name": "prod"}, format="json")
    assert first.status_code == 201
    again = manage_client.post("/api/keys", {"name": "Prod"}, format="json")
    assert again.status_code == 400
    assert "already in use" in again.json()["name"][0]
    assert ApiKey.objects.unscoped().filter(tenant=tenant, name__iexact="prod").count() == 1


def test_an_agent_name_in_use_is_a_field_error_on_create_and_rename(manage_client, tenant):
    manage_client.post("/api/agents", {"slug": "one", "name": "Support"}, format="json")
    manage_client.post("/api/agents", {"slug": "two", "name": "Sales"}, format="json")
    dup = manage_client.post("/api/agents", {"slug": "three", "name": "SUPPORT"}, format="json")
    assert dup.status_code == 400
    assert "name" in dup.json()
    renamed = manage_client.patch("/api/agents/two", {"name": "Support"}, format="json")
    assert renamed.status_code == 400
    assert "name" in renamed.json()
    assert Agent.objects.unscoped().get(tenant=tenant, slug="two").name == "Sales"
    assert Agent.objects.unscoped().filter(tenant=tenant).count() == 2


def test_createapikey_run_twice_with_one_name_numbers_the_second(tenant, capsys):
    call_command("createapikey", tenant.slug, "--name", "bench")
    call_command("createapikey", tenant.slug, "--name", "bench")
    assert "“bench 2”" in capsys.readouterr().out
    assert sorted(ApiKey.objects.unscoped().filter(tenant=tenant).values_list("name", flat=True)) == [
        "bench",
        "bench 2",
    ]


def test_createapikey_takes_an_allow_list(tenant, capsys):
    call_command("createapikey", tenant.slug, "--allow", "openai:*, route:support")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    assert key_info(raw).allowed_models == ("openai:*", "route:support")
    with pytest.raises(CommandError, match="allowed_models"):
        call_command("createapikey", tenant.slug, "--allow", "gpt 4")
