"""Budgets and caps on the pages: an agent's budget on its page, a key's monthly limit on the keys page (field
errors for bad input, effective at once), and the billing and usage pages naming the guardrail and own caps."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.caps import agent_budget_tcu, caps_update
from billing.models import AgentBudget
from billing.plans import assign_plan
from tenants.audit import SYSTEM
from tenants.keys import apikey_create, key_info_by_hash
from tenants.models import ApiKey, AuditEvent, Membership, User
from tenants.roles import Role

pytestmark = pytest.mark.django_db


def _as(tenant, role: str = "owner", make_user=None) -> Client:
    client = Client()
    if role == "owner":
        client.force_login(Membership.objects.unscoped().get(tenant=tenant, role="owner").user)
        return client
    user = User.objects.create_user(email=f"{role}@acme.example.com", password="a-sturdy-passphrase-42")
    Membership.objects.unscoped().create(tenant=tenant, user=user, role=role)
    client.force_login(user)
    return client


# --- the agent's budget ---------------------------------------------------------------------------------


def test_the_agent_page_sets_and_clears_its_monthly_budget(tenant, agent):
    client = _as(tenant)
    page = client.get(f"/agents/{agent.slug}/").content.decode()
    assert "Monthly budget (TCU)" in page
    saved = client.post(f"/agents/{agent.slug}/", {"action": "budget", "monthly_tcu": "250000"})
    assert saved.status_code == 302
    assert agent_budget_tcu(tenant.id, agent.id) == 250_000
    assert 'value="250000"' in client.get(f"/agents/{agent.slug}/").content.decode()
    assert AuditEvent.objects.unscoped().filter(tenant=tenant, action="billing.agent_budget.update").exists()
    cleared = client.post(f"/agents/{agent.slug}/", {"action": "budget", "monthly_tcu": ""})
    assert cleared.status_code == 302
    assert agent_budget_tcu(tenant.id, agent.id) is None


@pytest.mark.parametrize("value", ["-1", "lots", "1.5", str(2**63), "²"])
def test_a_bad_agent_budget_is_a_field_error_and_changes_nothing(tenant, agent, value):
    client = _as(tenant)
    response = client.post(f"/agents/{agent.slug}/", {"action": "budget", "monthly_tcu": value})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="id_monthly_tcu-errors"' in body
    assert not AgentBudget.objects.unscoped().filter(agent=agent).exists()
    agent.refresh_from_db()
    assert agent.name == "Support bot"  # the settings form was not submitted with it


def test_billing_members_set_budgets_and_members_only_read_them(tenant, agent):
    billing = _as(tenant, Role.BILLING)
    assert (
        billing.post(f"/agents/{agent.slug}/", {"action": "budget", "monthly_tcu": "10"}).status_code == 302
    )
    assert agent_budget_tcu(tenant.id, agent.id) == 10
    member = _as(tenant, Role.MEMBER)
    page = member.get(f"/agents/{agent.slug}/").content.decode()
    assert "10 TCU a month" in page
    assert 'name="monthly_tcu"' not in page
    refused = member.post(f"/agents/{agent.slug}/", {"action": "budget", "monthly_tcu": "99"})
    assert refused.status_code == 403
    assert agent_budget_tcu(tenant.id, agent.id) == 10


# --- the key's monthly limit ----------------------------------------------------------------------------


def test_a_new_key_can_carry_a_monthly_limit(tenant):
    client = _as(tenant)
    response = client.post("/keys/", {"name": "limited", "scopes": ["gateway"], "spend_limit_tcu": "5000"})
    assert response.status_code == 302
    assert ApiKey.objects.unscoped().get(tenant=tenant, name="limited").spend_limit_tcu == 5000


def test_the_keys_page_changes_a_keys_limit_and_the_gateway_sees_it_at_once(tenant):
    key, raw = apikey_create(tenant=tenant, actor=SYSTEM, name="bot", scopes=["gateway"])
    from tenants.keys import hash_key

    assert key_info_by_hash(hash_key(raw)).spend_limit_tcu is None  # cached now
    client = _as(tenant)
    response = client.post("/keys/", {"action": "limit", "key": key.id, "spend_limit_tcu": "777"})
    assert response.status_code == 302
    assert key_info_by_hash(hash_key(raw)).spend_limit_tcu == 777
    assert 'value="777"' in client.get("/keys/").content.decode()
    event = AuditEvent.objects.unscoped().get(tenant=tenant, action="apikey.spend_limit")
    assert event.changes == {"spend_limit_tcu": [None, 777]}
    cleared = client.post("/keys/", {"action": "limit", "key": key.id, "spend_limit_tcu": ""})
    assert cleared.status_code == 302
    key.refresh_from_db()
    assert key.spend_limit_tcu is None


@pytest.mark.parametrize("value", ["-5", "abc", str(2**63)])
def test_a_bad_key_limit_is_shown_next_to_that_keys_field(tenant, value):
    key, _ = apikey_create(tenant=tenant, actor=SYSTEM, name="bot", scopes=["gateway"], spend_limit_tcu=100)
    response = _as(tenant).post("/keys/", {"action": "limit", "key": key.id, "spend_limit_tcu": value})
    assert response.status_code == 400
    body = response.content.decode()
    assert f'id="limit-{key.id}-errors"' in body
    key.refresh_from_db()
    assert key.spend_limit_tcu == 100


def test_another_tenants_key_cannot_be_changed_from_the_keys_page(tenant, other_tenant):
    theirs, _ = apikey_create(tenant=other_tenant, actor=SYSTEM, name="theirs", scopes=["gateway"])
    response = _as(tenant).post("/keys/", {"action": "limit", "key": theirs.id, "spend_limit_tcu": "1"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.spend_limit_tcu is None


def test_the_api_changes_a_keys_limit_with_field_errors(tenant, manage_client):
    key, _ = apikey_create(tenant=tenant, actor=SYSTEM, name="bot", scopes=["gateway"])
    ok = manage_client.patch(f"/api/keys/{key.id}", {"spend_limit_tcu": 1234}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json()["spend_limit_tcu"] == 1234
    for body in ({"spend_limit_tcu": -1}, {"spend_limit_tcu": "x"}, {}, {"name": "renamed"}):
        bad = manage_client.patch(f"/api/keys/{key.id}", body, format="json")
        assert bad.status_code == 400, body
    key.refresh_from_db()
    assert (key.name, key.spend_limit_tcu) == ("bot", 1234)


# --- billing and usage pages say which cap is which ---------------------------------------------------


def test_billing_page_names_own_caps_and_the_guardrail_apart(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    client = _as(tenant)
    free = client.get("/billing/").content.decode()
    assert "no caps of your own" in free
    assert 'id="tcu-guardrail"' not in free  # free: no platform-managed spend, no guardrail
    assign_plan(tenant=tenant, plan_slug="enterprise")
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=None, hard_tcu=1_000_000)
    page = client.get("/billing/").content.decode()
    assert "your caps: warn — · hard 1,000,000" in page
    assert "platform guardrail: warn 200,000 · hard 300,000" in page
    assert 'name="hard_tcu" value="1000000"' in page  # the form edits the tenant's own caps


def test_usage_page_shows_a_bar_per_cap_saying_what_it_counts(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    client = _as(tenant)
    assert 'data-cap="' not in client.get("/usage/").content.decode()  # BYOK only, no caps: no bar
    assign_plan(tenant=tenant, plan_slug="enterprise")
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=50, hard_tcu=100)
    page = client.get("/usage/").content.decode()
    assert 'data-cap="your-own-caps"' in page
    assert 'data-cap="platform-guardrail"' in page
    assert "your own keys never count" in page
