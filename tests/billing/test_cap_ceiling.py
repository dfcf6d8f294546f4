"""Caps, budgets and key spend limits: tenants lower freely, raise platform-managed caps only to the plan's
ceiling, and every amount is range-checked (a field error, never a 500)."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.caps import limits_for
from billing.models import AgentBudget, Subscription
from billing.plans import assign_plan
from tenants.models import ApiKey, AuditEvent, Membership

pytestmark = pytest.mark.django_db

OUT_OF_RANGE = [2**63, 2**64 + 5, 2**53, 10**18, -1, "²", "1e3"]


@pytest.fixture
def pro(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    assign_plan(tenant=tenant, plan_slug="pro")
    return tenant


def test_raising_the_hard_cap_past_the_plan_ceiling_is_refused_naming_it(pro, manage_client):
    response = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 10**15}, format="json")
    assert response.status_code == 400
    assert "300,000" in response.json()["hard_tcu"][0]
    assert limits_for(pro.id).hard_tcu == 300_000
    assert not AuditEvent.objects.unscoped().filter(tenant=pro, action="billing.caps.update").exists()


def test_lowering_then_raising_back_up_to_the_ceiling_is_allowed(pro, manage_client):
    low = manage_client.put("/api/billing/caps", {"warn_tcu": 500, "hard_tcu": 1000}, format="json")
    assert low.status_code == 200
    assert limits_for(pro.id).hard_tcu == 1000
    back = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 300_000}, format="json")
    assert back.status_code == 200
    assert limits_for(pro.id).hard_tcu == 300_000
    above = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 300_001}, format="json")
    assert above.status_code == 400
    assert limits_for(pro.id).hard_tcu == 300_000


def test_a_cap_a_platform_admin_raised_can_still_be_lowered(pro, manage_client):
    Subscription.objects.unscoped().filter(tenant=pro).update(hard_tcu_override=5_000_000)
    lower = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 4_000_000}, format="json")
    assert lower.status_code == 200
    assert limits_for(pro.id).hard_tcu == 4_000_000
    higher = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 4_500_000}, format="json")
    assert higher.status_code == 400
    assert limits_for(pro.id).hard_tcu == 4_000_000


def test_the_billing_page_refuses_a_cap_past_the_ceiling_next_to_the_field(pro):
    client = Client()
    client.force_login(Membership.objects.unscoped().get(tenant=pro).user)
    response = client.post("/billing/", {"warn_tcu": "", "hard_tcu": str(10**15)})
    assert response.status_code == 400
    assert "300,000" in response.content.decode()
    assert limits_for(pro.id).hard_tcu == 300_000


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_caps_api_range_checks(tenant, manage_client, value):
    response = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": value}, format="json")
    assert response.status_code == 400
    assert "hard_tcu" in response.json()
    assert manage_client.get("/api/billing/caps").json()["hard_overridden"] is False


def test_the_largest_allowed_amount_is_accepted_without_platform_spend(tenant, manage_client):
    response = manage_client.put(
        "/api/billing/caps", {"warn_tcu": None, "hard_tcu": 2**53 - 1}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["hard_tcu"] == 2**53 - 1


@pytest.mark.parametrize("value", [2**63, 2**53, -1])
def test_billing_page_range_checks(tenant, value):
    client = Client()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant).user)
    response = client.post("/billing/", {"warn_tcu": "", "hard_tcu": str(value)})
    assert response.status_code == 400
    assert not Subscription.objects.unscoped().filter(tenant=tenant, hard_tcu_override__isnull=False).exists()


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_agent_budget_range_checks(tenant, agent, manage_client, value):
    response = manage_client.put(
        f"/api/billing/agents/{agent.slug}/budget", {"monthly_tcu": value}, format="json"
    )
    assert response.status_code == 400
    assert "monthly_tcu" in response.json()
    assert not AgentBudget.objects.unscoped().filter(agent=agent).exists()


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_api_key_spend_limit_range_checks(tenant, manage_client, value):
    before = ApiKey.objects.unscoped().filter(tenant=tenant).count()
    response = manage_client.post("/api/keys", {"name": "big", "spend_limit_tcu": value}, format="json")
    assert response.status_code == 400
    assert "spend_limit_tcu" in response.json()
    assert ApiKey.objects.unscoped().filter(tenant=tenant).count() == before
