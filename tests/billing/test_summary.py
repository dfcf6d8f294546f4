"""GET /api/billing/summary: the period's plan, TCU, caps, tokens, overage, amount due and Stripe invoices."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.caps import caps_update
from billing.managed import managed_set
from billing.plans import assign_plan
from billing.summary import billing_banner
from billing.usage import period_of
from tenants.audit import SYSTEM
from tenants.services import agent_create

from .conftest import make_usage

pytestmark = pytest.mark.django_db

FIELDS = {
    "period",
    "plan",
    "tcu_used",
    "warn_tcu",
    "hard_tcu",
    "included_tokens",
    "used_tokens",
    "overage_tokens",
    "overage_amount_usd",
    "amount_due_usd",
    "invoices",
}


def test_summary_has_the_documented_fields(manage_client, tenant):
    body = manage_client.get("/api/billing/summary").json()
    assert set(body) >= FIELDS
    assert body["period"] == period_of()
    assert body["plan"] == "free"
    assert body["invoices"] == []
    assert body["amount_due_usd"] == "0.00"


def test_summary_counts_platform_tokens_overage_and_amount_due(manage_client, tenant, agent):
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="starter")  # $5, 2M included, $2 per 1M
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=1000, hard_tcu=5000)
    make_usage(tenant, tokens=2_500_000, tcu=700)
    make_usage(tenant, tokens=1_000_000, tcu=100, mode="byok")
    make_usage(tenant, tokens=9_000_000, tcu=900, when=timezone.now() - timedelta(days=40))  # other period
    body = manage_client.get("/api/billing/summary").json()
    assert (body["plan"], body["included_tokens"], body["used_tokens"], body["overage_tokens"]) == (
        "free",
        2_000_000,
        2_500_000,
        500_000,
    )
    assert body["tcu_used"] == 800
    assert (body["warn_tcu"], body["hard_tcu"]) == (1000, 5000)
    assert body["overage_amount_usd"] == "1.00"
    assert body["amount_due_usd"] == "6.00"  # the default agent on Starter ($5) + $1 overage; `agent` is BYOK


def test_summary_itemises_the_managed_agents(manage_client, tenant, agent):
    writer = agent_create(tenant=tenant, actor=SYSTEM, slug="writer", name="Writer")
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="pro")
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="starter")
    make_usage(tenant, tokens=6_200_000, agent=agent)  # 1.2M over Pro's 5M at $3 → $3.60
    make_usage(tenant, tokens=1_000_000)  # the default agent: within Starter's 2M
    make_usage(
        tenant, tokens=4_000_000, agent=writer
    )  # not managed: platform tokens, no allowance, no overage
    make_usage(tenant, tokens=50_000_000, agent=agent, mode="byok")  # its own key: never counted
    body = manage_client.get("/api/billing/summary").json()
    assert body["managed"] == [
        {
            "agent": None,
            "agent_name": "Workspace default",
            "active": True,
            "tier": "starter",
            "tier_name": "Starter",
            "price_usd": "5.00",
            "included_tokens": 2_000_000,
            "used_tokens": 1_000_000,
            "overage_tokens": 0,
            "overage_usd_per_mtok": "2.00",
            "overage_amount_usd": "0.00",
        },
        {
            "agent": "support-bot",
            "agent_name": "Support bot",
            "active": True,
            "tier": "pro",
            "tier_name": "Pro",
            "price_usd": "10.00",
            "included_tokens": 5_000_000,
            "used_tokens": 6_200_000,
            "overage_tokens": 1_200_000,
            "overage_usd_per_mtok": "3.00",
            "overage_amount_usd": "3.60",
        },
    ]
    assert (body["included_tokens"], body["used_tokens"], body["overage_tokens"]) == (
        7_000_000,
        11_200_000,
        1_200_000,
    )
    assert (body["overage_amount_usd"], body["base_amount_usd"], body["amount_due_usd"]) == (
        "3.60",
        "15.00",
        "18.60",
    )


def test_summary_lists_stripe_invoices(paid_tenant, stripe):
    from rest_framework.test import APIClient

    from billing.models import Subscription
    from tenants.models import Membership

    sub = Subscription.objects.unscoped().get(tenant=paid_tenant)
    client = APIClient()
    client.force_login(Membership.objects.unscoped().get(tenant=paid_tenant).user)
    body = client.get("/api/billing/summary").json()
    assert len(body["invoices"]) >= 1  # the subscription's first invoice
    invoice = body["invoices"][0]
    assert invoice["id"].startswith("in_")
    assert invoice["amount_due_usd"] == "10.00"
    assert sub.stripe_customer_id


def test_summary_rejects_a_bad_period(manage_client, tenant):
    response = manage_client.get("/api/billing/summary?period=2026-13")
    assert response.status_code == 400
    assert "period" in response.json()


def test_banner_warns_near_the_cap_and_errors_at_the_hard_cap(tenant):
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=100, hard_tcu=200)
    assert billing_banner(tenant, used_tcu=50) is None
    assert billing_banner(tenant, used_tcu=150)["code"] == "near_cap"
    hard = billing_banner(tenant, used_tcu=250)
    assert hard["code"] == "hard_cap"
    assert "250 of 200 TCU" in hard["message"]
    assert "Your workspace's" in hard["message"]


def test_banner_of_the_guardrail_counts_platform_tcu_and_says_own_keys_keep_working(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 100, 200
    assign_plan(tenant=tenant, plan_slug="enterprise")
    assert billing_banner(tenant, used_tcu=10**9, platform_tcu=50) is None  # BYOK spend never counts
    assert billing_banner(tenant, used_tcu=0, platform_tcu=150)["code"] == "near_guardrail"
    hard = billing_banner(tenant, used_tcu=0, platform_tcu=200)
    assert hard["code"] == "guardrail"
    assert "200 of 200 TCU of platform-managed calls" in hard["message"]
    assert "keep working" in hard["message"]


def test_a_byok_tenant_without_caps_of_its_own_sees_no_cap_banner(tenant):
    assert billing_banner(tenant, used_tcu=10**12) is None


def test_summary_names_the_guardrail_and_the_own_caps_apart(manage_client, tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    make_usage(tenant, tcu=5_000_000, mode="byok")
    make_usage(tenant, tcu=1_000, mode="platform")
    body = manage_client.get("/api/billing/summary").json()  # free: no platform spend included
    assert (body["warn_tcu"], body["hard_tcu"]) == (None, None)
    assert (body["own_warn_tcu"], body["own_hard_tcu"]) == (None, None)
    assert (body["platform_warn_tcu"], body["platform_hard_tcu"]) == (0, 0)

    assign_plan(tenant=tenant, plan_slug="enterprise")
    body = manage_client.get("/api/billing/summary").json()
    assert (body["tcu_used"], body["platform_tcu_used"]) == (5_001_000, 1_000)
    assert (body["warn_tcu"], body["hard_tcu"]) == (200_000, 300_000)  # the guardrail applies
    assert (body["platform_warn_tcu"], body["platform_hard_tcu"]) == (200_000, 300_000)

    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=None, hard_tcu=9_000_000)
    body = manage_client.get("/api/billing/summary").json()
    assert (body["warn_tcu"], body["hard_tcu"]) == (200_000, 9_000_000)  # own hard cap, guardrail's warn
    assert (body["own_warn_tcu"], body["own_hard_tcu"]) == (None, 9_000_000)
    assert body["platform_hard_tcu"] == 300_000
