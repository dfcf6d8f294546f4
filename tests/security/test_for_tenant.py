"""`Model.objects.for_tenant(t)`: reads only t's rows, writes only into t, and refuses to run without a tenant."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.models import Agent, Tenant
from tenants.scoping import TenantScopeError, tenant_scope


@pytest.fixture
def agents(tenant, other_tenant):
    Agent.objects.for_tenant(tenant).create(slug="a-bot", name="A")
    Agent.objects.for_tenant(other_tenant).create(slug="b-bot", name="B")


def _slugs(qs) -> list[str]:
    return sorted(qs.values_list("slug", flat=True))


def test_reads_only_the_tenants_rows(tenant, other_tenant, agents):
    assert _slugs(Agent.objects.for_tenant(tenant)) == ["a-bot"]
    assert _slugs(Agent.objects.for_tenant(other_tenant)) == ["b-bot"]
    assert not Agent.objects.for_tenant(tenant).filter(slug="b-bot").exists()


def test_takes_the_tenants_id(tenant, other_tenant, agents):
    assert _slugs(Agent.objects.for_tenant(tenant.id)) == ["a-bot"]
    assert _slugs(Agent.objects.for_tenant(other_tenant.id).filter(is_active=True)) == ["b-bot"]


def test_needs_no_tenant_in_scope_and_ignores_the_one_there(tenant, other_tenant, agents):
    with tenant_scope(other_tenant):
        assert _slugs(Agent.objects.for_tenant(tenant)) == ["a-bot"]


def test_create_fills_the_tenant_in(tenant):
    agent = Agent.objects.for_tenant(tenant).create(slug="filled", name="F")
    assert agent.tenant_id == tenant.id
    with CaptureQueriesContext(connection) as queries:
        assert agent.tenant is tenant  # the Tenant given, not fetched again
    assert not queries.captured_queries
    assert Agent.objects.unscoped().get(pk=agent.pk).tenant_id == tenant.id


def test_create_by_id_fills_the_tenant_id_in(tenant):
    agent = Agent.objects.for_tenant(tenant.id).filter(is_active=True).create(slug="by-id", name="I")
    assert Agent.objects.unscoped().get(pk=agent.pk).tenant_id == tenant.id


def test_create_accepts_its_own_tenant_named_again(tenant):
    Agent.objects.for_tenant(tenant).create(tenant=tenant, slug="same", name="S")
    Agent.objects.for_tenant(tenant).create(tenant_id=tenant.id, slug="same-id", name="S2")
    assert _slugs(Agent.objects.for_tenant(tenant)) == ["same", "same-id"]


def test_create_refuses_another_tenant_and_writes_nothing(tenant, other_tenant):
    with pytest.raises(TenantScopeError, match="cannot write into tenant"):
        Agent.objects.for_tenant(tenant).create(tenant=other_tenant, slug="moved", name="M")
    with pytest.raises(TenantScopeError):
        Agent.objects.for_tenant(tenant.id).create(tenant_id=other_tenant.id, slug="moved", name="M")
    with pytest.raises(TenantScopeError):
        Agent.objects.for_tenant(tenant).create(tenant=None, slug="moved", name="M")
    assert not Agent.objects.unscoped().filter(slug="moved").exists()


def test_get_or_create_finds_only_the_tenants_row_and_creates_in_it(tenant, other_tenant, agents):
    found, created = Agent.objects.for_tenant(tenant).get_or_create(slug="a-bot")
    assert not created
    assert found.tenant_id == tenant.id
    # b-bot exists, but in the other tenant: this one gets its own.
    made, created = Agent.objects.for_tenant(tenant).get_or_create(slug="b-bot", defaults={"name": "Mine"})
    assert created
    assert made.tenant_id == tenant.id
    assert Agent.objects.unscoped().filter(slug="b-bot").count() == 2


def test_get_or_create_refuses_another_tenant_in_defaults(tenant, other_tenant):
    with pytest.raises(TenantScopeError):
        Agent.objects.for_tenant(tenant).get_or_create(slug="new", defaults={"tenant": other_tenant})
    assert not Agent.objects.unscoped().filter(slug="new").exists()


def test_update_or_create_creates_in_the_tenant_and_updates_only_its_row(tenant, other_tenant, agents):
    made, created = Agent.objects.for_tenant(tenant).update_or_create(slug="fresh", defaults={"name": "N"})
    assert created
    assert made.tenant_id == tenant.id
    row, created = Agent.objects.for_tenant(other_tenant).update_or_create(
        slug="b-bot", defaults={"name": "Renamed"}
    )
    assert not created
    assert row.tenant_id == other_tenant.id
    assert Agent.objects.for_tenant(other_tenant).get(slug="b-bot").name == "Renamed"
    with pytest.raises(TenantScopeError):
        Agent.objects.for_tenant(tenant).update_or_create(slug="a-bot", defaults={"tenant": other_tenant})
    assert Agent.objects.for_tenant(tenant).filter(slug="a-bot").exists()


def test_bulk_create_fills_the_tenant_in_and_refuses_another(tenant, other_tenant):
    made = Agent.objects.for_tenant(tenant).bulk_create(
        [Agent(slug="bulk-1", name="1"), Agent(slug="bulk-2", name="2", tenant=tenant)]
    )
    assert [a.tenant_id for a in made] == [tenant.id, tenant.id]
    assert _slugs(Agent.objects.for_tenant(tenant)) == ["bulk-1", "bulk-2"]
    with pytest.raises(TenantScopeError):
        Agent.objects.for_tenant(tenant.id).bulk_create(
            [Agent(slug="bulk-3", name="3"), Agent(slug="bulk-4", name="4", tenant=other_tenant)]
        )
    assert not Agent.objects.unscoped().filter(slug__in=["bulk-3", "bulk-4"]).exists()


def test_update_refuses_to_move_rows_to_another_tenant(tenant, other_tenant, agents):
    with pytest.raises(TenantScopeError):
        Agent.objects.for_tenant(tenant).update(tenant=other_tenant)
    assert Agent.objects.for_tenant(tenant).update(name="Same") == 1
    assert Agent.objects.for_tenant(other_tenant).get().name == "B"


def test_async_create_fills_the_tenant_in(tenant):
    agent = async_to_sync(Agent.objects.for_tenant(tenant).acreate)(slug="async", name="A")
    assert agent.tenant_id == tenant.id


def test_refuses_none():
    with pytest.raises(
        TenantScopeError, match=r"Agent\.objects\.for_tenant\(None\): a tenant .* is required"
    ):
        Agent.objects.for_tenant(None)  # type: ignore[arg-type]


def test_refuses_an_unsaved_tenant_and_anything_but_a_tenant_or_its_id(tenant):
    with pytest.raises(TenantScopeError, match="not saved"):
        Agent.objects.for_tenant(Tenant(slug="unsaved"))
    agent = Agent.objects.for_tenant(tenant).create(slug="not-a-tenant", name="N")
    for wrong in (agent, str(tenant.id), True, 1.0):
        with pytest.raises(TypeError, match="takes a Tenant or its id"):
            Agent.objects.for_tenant(wrong)  # type: ignore[arg-type]


def test_the_default_manager_still_refuses_without_a_tenant_in_scope(tenant):
    with pytest.raises(TenantScopeError):
        list(Agent.objects.all())
