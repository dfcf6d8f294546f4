"""Caps: the platform's guardrail (env < plan) and the tenant's own caps, invalidation, the caps API (roles,
validation, audit)."""

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from billing.caps import agent_budget_tcu, caps_update, hard_cap_message, limits_for
from billing.models import Plan
from billing.plans import assign_plan
from tenants.audit import SYSTEM
from tenants.models import AuditEvent, Membership
from tenants.roles import Role

pytestmark = pytest.mark.django_db


def test_the_guardrail_comes_from_the_environment_when_the_plan_is_silent(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 1234, 5678
    assign_plan(tenant=tenant, plan_slug="enterprise")
    limits = limits_for(tenant.id)
    assert (limits.platform_warn_tcu, limits.platform_hard_tcu) == (1234, 5678)
    assert (limits.own_warn_tcu, limits.own_hard_tcu) == (None, None)
    assert (limits.warn_tcu, limits.hard_tcu) == (1234, 5678)  # what applies: the guardrail


def test_a_free_byok_tenant_has_no_guardrail_and_no_cap_unless_it_sets_one(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 1234, 5678
    assign_plan(tenant=tenant, plan_slug="free")
    limits = limits_for(tenant.id)
    assert (limits.platform_warn_tcu, limits.platform_hard_tcu) == (0, 0)
    assert (limits.warn_tcu, limits.hard_tcu) == (None, None)
    assert limits.plan == "free"
    assert limits.rpm_tenant == 60
    assert limits.max_concurrency == 20


def test_plan_caps_override_the_environment(tenant):
    Plan.objects.filter(slug="enterprise").update(warn_tcu=10_000, hard_tcu=20_000)
    assign_plan(tenant=tenant, plan_slug="enterprise")
    limits = limits_for(tenant.id)
    assert (limits.warn_tcu, limits.hard_tcu) == (10_000, 20_000)


def test_tenant_override_beats_the_plan(tenant):
    Plan.objects.filter(slug="enterprise").update(warn_tcu=10_000, hard_tcu=20_000)
    assign_plan(tenant=tenant, plan_slug="enterprise")
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=500, hard_tcu=None)
    limits = limits_for(tenant.id)
    assert (limits.warn_tcu, limits.hard_tcu) == (500, 20_000)


def test_limits_are_cached_and_a_caps_change_invalidates_them(tenant, django_assert_num_queries):
    assign_plan(tenant=tenant, plan_slug="enterprise")
    limits_for(tenant.id)
    with django_assert_num_queries(0):
        limits_for(tenant.id)
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=1, hard_tcu=2)
    assert limits_for(tenant.id).hard_tcu == 2


def test_caps_change_reaches_the_gateway_process_cache_at_once(tenant):
    from llm.calls import hot_cache

    hot_cache.limits.set(tenant.id, "stale")
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=1, hard_tcu=2)
    assert hot_cache.limits.get(tenant.id) is None


def test_a_plan_edit_reaches_every_tenant_on_it(tenant, admin_client):
    assign_plan(tenant=tenant, plan_slug="enterprise")
    assert limits_for(tenant.id).rpm_tenant is None
    from billing.caps import invalidate_all

    Plan.objects.filter(slug="enterprise").update(rpm_tenant=7)
    invalidate_all()
    assert limits_for(tenant.id).rpm_tenant == 7


def test_agent_budget_is_read_for_the_gateway(tenant, agent, manage_client):
    assert agent_budget_tcu(tenant.id, agent.id) is None
    response = manage_client.put(
        f"/api/billing/agents/{agent.slug}/budget", {"monthly_tcu": 900}, format="json"
    )
    assert response.status_code == 200, response.content
    assert agent_budget_tcu(tenant.id, agent.id) == 900


def test_hard_cap_message_states_which_cap_usage_unit_and_reset():
    msg = hard_cap_message(300_512, 300_000, datetime(2026, 12, 1, tzinfo=UTC))
    assert msg == (
        "Your workspace's monthly TCU hard cap reached: 300,512 of 300,000 TCU used (all calls, every mode). "
        "New calls are refused until the period resets on 2026-12-01 00:00 UTC or the cap is raised "
        "(Billing → Caps)."
    )


def test_guardrail_message_says_it_is_the_platforms_and_that_own_keys_keep_working():
    msg = hard_cap_message(750_002, 750_000, datetime(2026, 12, 1, tzinfo=UTC), scope="platform")
    assert msg.startswith("Monthly guardrail on platform-managed models reached: 750,002 of 750,000 TCU")
    assert "2026-12-01 00:00 UTC" in msg
    assert "your own provider keys (BYOK) and custom endpoints keep working" in msg


# --- the API ---------------------------------------------------------------------------------------


def test_caps_api_reads_the_caps_that_apply_and_each_source(manage_client, tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    body = manage_client.get("/api/billing/caps").json()  # free, BYOK only: nothing applies
    assert (body["warn_tcu"], body["hard_tcu"]) == (None, None)
    assert (body["platform_warn_tcu"], body["platform_hard_tcu"]) == (0, 0)
    assert body["warn_overridden"] is False
    assign_plan(tenant=tenant, plan_slug="enterprise")
    body = manage_client.get("/api/billing/caps").json()
    assert (body["warn_tcu"], body["hard_tcu"]) == (200_000, 300_000)
    assert (body["platform_warn_tcu"], body["platform_hard_tcu"]) == (200_000, 300_000)
    assert (body["own_warn_tcu"], body["own_hard_tcu"]) == (None, None)


def test_caps_api_update_is_effective_and_audited(manage_client, tenant):
    response = manage_client.put("/api/billing/caps", {"warn_tcu": 1000, "hard_tcu": 2000}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["hard_tcu"] == 2000
    assert response.json()["hard_overridden"] is True
    assert limits_for(tenant.id).hard_tcu == 2000
    event = AuditEvent.objects.unscoped().get(tenant=tenant, action="billing.caps.update")
    assert event.changes["after"] == {"warn_tcu": 1000, "hard_tcu": 2000}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"warn_tcu": -1, "hard_tcu": 10}, "warn_tcu"),
        ({"warn_tcu": 1, "hard_tcu": "lots"}, "hard_tcu"),
        ({"warn_tcu": 500, "hard_tcu": 100}, "warn_tcu"),
        ({"warn_tcu": 1.5, "hard_tcu": 100}, "warn_tcu"),
        ({"hard_tcu": 100}, "warn_tcu"),
    ],
)
def test_caps_api_rejects_bad_values_with_field_errors_and_changes_nothing(
    manage_client, tenant, body, field
):
    response = manage_client.put("/api/billing/caps", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert manage_client.get("/api/billing/caps").json()["warn_overridden"] is False
    assert not AuditEvent.objects.unscoped().filter(tenant=tenant, action="billing.caps.update").exists()


@pytest.mark.parametrize(
    ("role", "allowed"), [(Role.OWNER, True), (Role.ADMIN, True), (Role.BILLING, True), (Role.MEMBER, False)]
)
def test_caps_api_is_for_owner_admin_and_billing(tenant, make_user, role, allowed):
    user = make_user()
    if role == Role.OWNER:
        Membership.objects.unscoped().filter(tenant=tenant).update(role=Role.ADMIN)
    Membership.objects.unscoped().create(tenant=tenant, user=user, role=role)
    client = APIClient()
    client.force_login(user)
    read = client.get("/api/billing/caps")
    write = client.put("/api/billing/caps", {"warn_tcu": 10, "hard_tcu": 20}, format="json")
    assert (read.status_code == 200) is allowed
    assert (write.status_code == 200) is allowed
    if not allowed:
        assert write.status_code == 403
        assert limits_for(tenant.id).hard_tcu != 20


def test_a_hard_cap_at_or_below_this_months_usage_needs_confirm(manage_client, tenant, monkeypatch):
    """Such a cap refuses every paid call at once: the API says so and saves nothing until asked with confirm."""
    from llm.limits import budget

    monkeypatch.setattr(budget.RedisBackend, "used", lambda self, scope, period, **kw: 5_000)
    for hard in (0, 5_000):
        refused = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": hard}, format="json")
        assert refused.status_code == 400
        (message,) = refused.json()["hard_tcu"]
        assert f"A hard cap of {hard:,} TCU" in message
        assert "5,000 TCU ($0.05) already used this month" in message
        assert 'Send "confirm": true' in message
        assert limits_for(tenant.id).own_hard_tcu is None
    assert not AuditEvent.objects.unscoped().filter(tenant=tenant, action="billing.caps.update").exists()
    above = manage_client.put("/api/billing/caps", {"warn_tcu": None, "hard_tcu": 5_001}, format="json")
    assert above.status_code == 200, above.content
    confirmed = manage_client.put(
        "/api/billing/caps", {"warn_tcu": None, "hard_tcu": 0, "confirm": True}, format="json"
    )
    assert confirmed.status_code == 200, confirmed.content
    assert limits_for(tenant.id).own_hard_tcu == 0
    # The cap already set is not asked about again when only the warn level changes
    again = manage_client.put("/api/billing/caps", {"warn_tcu": 0, "hard_tcu": 0}, format="json")
    assert again.status_code == 200, again.content
    bad = manage_client.put(
        "/api/billing/caps", {"warn_tcu": 0, "hard_tcu": 0, "confirm": "yes"}, format="json"
    )
    assert bad.status_code == 400
    assert "confirm" in bad.json()
