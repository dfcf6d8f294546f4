"""Stripe webhooks: signature verified, each event processed once, payment failure → past due → grace → BYOK only."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from billing.caps import limits_for
from billing.models import ManagedAgent, Notification, StripeEvent, Subscription
from billing.summary import billing_banner

from .conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.django_db
URL = "/billing/stripe/webhook"


def signed(payload: dict, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, str]:
    """Sign like Stripe: HMAC-SHA256 of "{t}.{payload}" in the Stripe-Signature header."""
    body = json.dumps(payload).encode()
    t = int(timestamp or time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={mac}"


def post(payload: dict, **kwargs):
    body, header = signed(payload, **kwargs)
    return Client().post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def event(type_: str, obj: dict, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{type_.replace('.', '_')}_{time.monotonic_ns()}",
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "type": type_,
        "livemode": False,
        "pending_webhooks": 1,
        "data": {"object": obj},
    }


def invoice(customer: str, status: str = "open") -> dict:
    return {
        "id": "in_1TestInvoice",
        "object": "invoice",
        "customer": customer,
        "status": status,
        "amount_due": 1000,
        "amount_paid": 0,
        "currency": "usd",
        "number": "BYOK-0001",
        "lines": {"object": "list", "data": []},
    }


@pytest.fixture
def customer(tenant, settings, paid_plans):
    """`tenant` on the paid workspace plan Team (platform-managed keys), known to Stripe as cus_TestAcme."""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    from billing.plans import assign_plan

    sub = assign_plan(tenant=tenant, plan_slug="team")
    Subscription.objects.unscoped().filter(pk=sub.pk).update(
        stripe_customer_id="cus_TestAcme", stripe_subscription_id="sub_TestAcme"
    )
    return "cus_TestAcme"


def test_a_bad_signature_is_400_and_changes_nothing(tenant, customer):
    body, header = signed(event("invoice.payment_failed", invoice(customer)), secret="whsec_wrong")
    response = Client().post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert response.status_code == 400
    missing = Client().post(URL, body, content_type="application/json")
    assert missing.status_code == 400
    assert not StripeEvent.objects.exists()
    assert Subscription.objects.unscoped().get(tenant=tenant).status == "active"


def test_a_stale_signature_is_refused(tenant, customer):
    response = post(event("invoice.payment_failed", invoice(customer)), timestamp=int(time.time()) - 3600)
    assert response.status_code == 400
    assert Subscription.objects.unscoped().get(tenant=tenant).status == "active"


def test_a_replayed_event_is_processed_once(tenant, customer):
    evt = event("invoice.payment_failed", invoice(customer), event_id="evt_replayed")
    assert post(evt).json()["result"] == "past due"
    assert post(evt).json()["result"] == "duplicate"
    assert StripeEvent.objects.filter(event_id="evt_replayed").count() == 1
    assert Notification.objects.unscoped().filter(tenant=tenant, title="Payment failed").count() == 1


def test_payment_failed_marks_past_due_and_platform_stops_after_the_grace_period(tenant, customer, settings):
    settings.BILLING_GRACE_DAYS = 7
    assert post(event("invoice.payment_failed", invoice(customer))).status_code == 200
    sub = Subscription.objects.unscoped().get(tenant=tenant)
    assert sub.status == "past_due"
    assert limits_for(tenant.id).platform_allowed  # within the grace period
    banner = billing_banner(tenant)
    assert banner["code"] == "past_due"
    assert "payment" in banner["message"]

    Subscription.objects.unscoped().filter(pk=sub.pk).update(
        past_due_since=timezone.now() - timedelta(days=8)
    )
    from billing.caps import invalidate

    invalidate(tenant.id)
    limits = limits_for(tenant.id)
    assert not limits.platform_allowed
    assert "BYOK" in limits.platform_block_reason
    assert "overdue" in limits.platform_block_reason
    assert limits.hard_tcu > 0
    assert limits.plan == "team"
    assert billing_banner(tenant)["code"] == "past_due_blocked"

    assert post(event("invoice.paid", invoice(customer, status="paid"))).json()["result"] == "paid"
    assert Subscription.objects.unscoped().get(tenant=tenant).status == "active"
    assert limits_for(tenant.id).platform_allowed
    assert billing_banner(tenant) is None


def test_subscription_updated_mirrors_plan_quantity_and_status(tenant, customer):
    obj = {
        "id": "sub_TestAcme",
        "object": "subscription",
        "customer": customer,
        "status": "active",
        "metadata": {"tenant": "acme"},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "object": "subscription_item",
                    "quantity": 4,
                    "current_period_end": int(time.time()) + 86400,
                    "price": {"id": "byok-business-agent-2000-usd-month"},
                }
            ],
        },
    }
    assert post(event("customer.subscription.updated", obj)).status_code == 200
    sub = Subscription.objects.unscoped().select_related("plan").get(tenant=tenant)
    assert (sub.plan.slug, sub.quantity, sub.status) == ("business", 4, "active")
    assert sub.current_period_end is not None
    assert limits_for(tenant.id).plan == "business"


def test_a_subscription_of_managed_tiers_leaves_the_workspace_plan_alone(tenant, customer):
    obj = {
        "id": "sub_TestAcme",
        "object": "subscription",
        "customer": customer,
        "status": "active",
        "metadata": {"tenant": "acme"},
        "items": {
            "object": "list",
            "data": [
                {"id": "si_1", "object": "subscription_item", "quantity": 3, "plan": {"id": tier}}
                for tier in ("byok-tier-pro-1000-usd-month", "byok-tier-ultra-2000-usd-month")
            ],
        },
    }
    assert post(event("customer.subscription.updated", obj)).status_code == 200
    sub = Subscription.objects.unscoped().select_related("plan").get(tenant=tenant)
    assert (sub.plan.slug, sub.quantity, sub.status) == ("team", 1, "active")


def test_a_retired_plan_in_stripe_is_not_mirrored_back(tenant, customer):
    obj = {
        "id": "sub_TestAcme",
        "object": "subscription",
        "customer": customer,
        "status": "active",
        "metadata": {"tenant": "acme", "plan": "pro"},
        "items": {
            "object": "list",
            "data": [{"id": "si_1", "quantity": 2, "plan": {"id": "byok-pro-agent-1000-usd-month"}}],
        },
    }
    assert post(event("customer.subscription.updated", obj)).status_code == 200
    assert Subscription.objects.unscoped().select_related("plan").get(tenant=tenant).plan.slug == "team"


def test_subscription_deleted_moves_the_tenant_to_free(tenant, customer):
    obj = {
        "id": "sub_TestAcme",
        "object": "subscription",
        "customer": customer,
        "status": "canceled",
        "items": {"object": "list", "data": []},
    }
    assert post(event("customer.subscription.deleted", obj)).status_code == 200
    sub = Subscription.objects.unscoped().select_related("plan").get(tenant=tenant)
    assert (sub.plan.slug, sub.stripe_subscription_id) == ("free", "")
    assert not limits_for(tenant.id).platform_allowed


def test_subscription_deleted_ends_the_managed_tiers_it_paid_for(tenant, agent, customer):
    from billing.caps import managed_access
    from billing.managed import managed_set
    from tenants.audit import SYSTEM
    from tenants.models import AuditEvent

    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="pro")
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="starter")
    obj = {"id": "sub_TestAcme", "object": "subscription", "customer": customer, "status": "canceled"}
    assert post(event("customer.subscription.deleted", obj)).status_code == 200
    assert not ManagedAgent.objects.unscoped().filter(tenant=tenant, ended_at__isnull=True).exists()
    assert managed_access(tenant.id, agent.id) is None
    assert AuditEvent.objects.unscoped().filter(tenant=tenant, action="billing.managed.end").count() == 2
    note = Notification.objects.unscoped().get(tenant=tenant, title="Subscription ended")
    assert "managed LLM is off on 2 agents" in note.body


def test_checkout_completed_applies_the_chosen_plan(tenant, settings, paid_plans):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    obj = {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "customer": "cus_New",
        "subscription": "sub_New",
        "client_reference_id": "acme",
        "metadata": {"tenant": "acme", "plan": "team"},
    }
    assert post(event("checkout.session.completed", obj)).json()["result"] == "checkout completed"
    sub = Subscription.objects.unscoped().select_related("plan").get(tenant=tenant)
    assert (sub.plan.slug, sub.stripe_subscription_id, sub.stripe_customer_id) == (
        "team",
        "sub_New",
        "cus_New",
    )


def test_checkout_completed_turns_the_paid_managed_tier_on(tenant, agent, settings):
    from billing.caps import managed_access

    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    obj = {
        "id": "cs_test_a2",
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "customer": "cus_New",
        "subscription": "sub_New",
        "client_reference_id": "acme",
        "metadata": {"tenant": "acme", "managed_tier": "pro", "managed_agent": str(agent.pk)},
    }
    assert post(event("checkout.session.completed", obj)).json()["result"] == "checkout completed"
    row = ManagedAgent.objects.unscoped().select_related("tier").get(tenant=tenant)
    assert (row.agent_id, row.tier.slug) == (agent.pk, "pro")
    sub = Subscription.objects.unscoped().select_related("plan").get(tenant=tenant)
    assert (sub.plan.slug, sub.stripe_subscription_id) == ("free", "sub_New")
    assert managed_access(tenant.id, agent.id).tier == "pro"


def test_a_checkout_naming_another_tenants_agent_applies_nothing(tenant, other_tenant, settings):
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    theirs = agent_create(tenant=other_tenant, actor=SYSTEM, slug="theirs", name="Theirs")
    obj = {
        "id": "cs_test_a3",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": "cus_New",
        "subscription": "sub_New",
        "metadata": {"tenant": "acme", "managed_tier": "pro", "managed_agent": str(theirs.pk)},
    }
    assert post(event("checkout.session.completed", obj)).status_code == 200
    assert not ManagedAgent.objects.unscoped().exists()


def test_events_for_unknown_customers_are_acknowledged_and_ignored(tenant, customer):
    response = post(event("invoice.payment_failed", invoice("cus_Unknown")))
    assert response.status_code == 200
    assert response.json()["result"] == "unknown tenant"
    assert Subscription.objects.unscoped().get(tenant=tenant).status == "active"
