"""Caps, budgets and key spend limits: a tenant's own caps never raise the platform's guardrail (a separate
counter), and every amount is range-checked (a field error, never a 500)."""

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
def platform(tenant, settings):
    """A tenant whose plan includes platform-managed models: its guardrail is the environment's figures."""
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


def test_an_own_cap_above_the_guardrail_is_accepted_and_leaves_the_guardrail_as_it_is(
    platform, manage_client
):
    response = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 10**15}, format="json")
    assert response.status_code == 200, response.content
    limits = limits_for(platform.id)
    assert limits.own_hard_tcu == 10**15  # counts every call (own keys too)
    assert limits.platform_hard_tcu == 300_000  # platform-managed calls still stop here
    assert response.json()["platform_hard_tcu"] == 300_000


def test_an_own_cap_below_the_guardrail_applies_and_clearing_it_falls_back_to_the_guardrail(
    platform, manage_client
):
    low = manage_client.put("/api/billing/caps", {"warn_tcu": 500, "hard_tcu": 1000}, format="json")
    assert low.status_code == 200
    assert (low.json()["warn_tcu"], low.json()["hard_tcu"]) == (500, 1000)
    assert limits_for(platform.id).hard_tcu == 1000
    back = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": None}, format="json")
    assert back.status_code == 200
    assert (back.json()["own_warn_tcu"], back.json()["own_hard_tcu"]) == (None, None)
    assert limits_for(platform.id).hard_tcu == 300_000


def test_the_billing_page_refuses_a_warn_level_above_the_hard_cap_next_to_the_field(platform):
    client = Client()
    client.force_login(Membership.objects.unscoped().get(tenant=platform).user)
    response = client.post("/billing/", {"warn_tcu": "2000", "hard_tcu": "1000"})
    assert response.status_code == 400
    assert "cannot be above the hard cap" in response.content.decode()
    assert limits_for(platform.id).own_hard_tcu is None
    assert not AuditEvent.objects.unscoped().filter(tenant=platform, action="billing.caps.update").exists()


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
