"""Workspace plan changes through Stripe (localstripe): customer, subscription, quantity, cancel, card errors.
No paid workspace plan is seeded any more (managed tiers are sold per agent: test_managed.py); these use the
paid plans of the `paid_plans` fixture."""

import pytest
import stripe as stripe_sdk

from billing.caps import limits_for
from billing.models import Subscription
from billing.plans import plan_change
from billing.stripe.client import BillingError, stripe_errors
from billing.stripe.sync import ensure_customer, subscription_sync_items
from tenants.audit import SYSTEM
from tenants.services import agent_create

from .conftest import attach_card

pytestmark = pytest.mark.django_db


def _sub(tenant) -> Subscription:
    return Subscription.objects.unscoped().select_related("plan").get(tenant=tenant)


def test_customer_is_created_once_with_the_tenant_slug_in_metadata(tenant, stripe):
    first = ensure_customer(tenant)
    assert ensure_customer(tenant) == first
    customer = stripe.v1.customers.retrieve(first)
    assert customer.metadata["tenant"] == "acme"
    assert len(stripe.v1.customers.list().data) == 1


def test_plan_change_with_a_card_on_file_starts_the_subscription(tenant, stripe, paid_plans):
    agent_create(tenant=tenant, actor=SYSTEM, slug="bot-a", name="A")
    agent_create(tenant=tenant, actor=SYSTEM, slug="bot-b", name="B")
    attach_card(tenant)
    result = plan_change(tenant=tenant, actor=SYSTEM, plan_slug="team")
    assert result.checkout_url is None
    assert result.changed
    sub = _sub(tenant)
    assert sub.plan.slug == "team"
    assert sub.status == "active"
    remote = stripe.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert remote["items"]["data"][0]["quantity"] == 2  # one per agent
    assert remote["items"]["data"][0]["plan"]["amount"] == 1000
    assert limits_for(tenant.id).platform_allowed


def test_plan_change_updates_then_cancels_the_subscription(plan_tenant, stripe):
    sub_id = _sub(plan_tenant).stripe_subscription_id
    plan_change(tenant=plan_tenant, actor=SYSTEM, plan_slug="business")
    remote = stripe.v1.subscriptions.retrieve(sub_id)
    assert [i["plan"]["amount"] for i in remote["items"]["data"]] == [2000]
    assert _sub(plan_tenant).plan.slug == "business"
    plan_change(tenant=plan_tenant, actor=SYSTEM, plan_slug="free")
    assert stripe.v1.subscriptions.retrieve(sub_id).status == "canceled"
    sub = _sub(plan_tenant)
    assert sub.plan.slug == "free"
    assert sub.stripe_subscription_id == ""
    assert not limits_for(plan_tenant.id).platform_allowed


def test_adding_an_agent_updates_the_subscription_quantity(plan_tenant, stripe):
    agent_create(tenant=plan_tenant, actor=SYSTEM, slug="bot-a", name="A")
    agent_create(tenant=plan_tenant, actor=SYSTEM, slug="bot-b", name="B")
    assert subscription_sync_items(tenant=plan_tenant) == "updated"  # what the on_commit task does
    remote = stripe.v1.subscriptions.retrieve(_sub(plan_tenant).stripe_subscription_id)
    assert remote["items"]["data"][0]["quantity"] == 2


def test_a_declined_card_is_a_clear_message_and_changes_nothing(tenant, stripe, paid_plans):
    with pytest.raises(BillingError) as info, stripe_errors("test attach"):
        attach_card(tenant, number="4000000000000002")
    assert info.value.message == "Your card was declined."
    assert info.value.code == "card_declined"
    with pytest.raises(BillingError):
        plan_change(
            tenant=tenant, actor=SYSTEM, plan_slug="team"
        )  # no card → checkout, which localstripe lacks
    assert _sub(tenant).plan.slug == "free"


def test_a_failing_first_payment_leaves_the_plan_unchanged(tenant, stripe, paid_plans):
    attach_card(tenant, number="4000000000000341")  # attaches, then every charge fails
    with pytest.raises(BillingError) as info:
        plan_change(tenant=tenant, actor=SYSTEM, plan_slug="team")
    # real Stripe answers a card error (error_if_incomplete); localstripe an incomplete subscription
    assert info.value.code in {"card_declined", "payment_failed"}
    assert not stripe.v1.subscriptions.list(params={"status": "active"}).data
    assert _sub(tenant).plan.slug == "free"
    assert not limits_for(tenant.id).platform_allowed


def test_stripe_unreachable_is_a_retryable_message(tenant, stripe_settings, settings, paid_plans):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens
    from billing.stripe.client import reset_clients

    reset_clients()
    with pytest.raises(BillingError) as info:
        plan_change(tenant=tenant, actor=SYSTEM, plan_slug="team")
    assert info.value.retryable
    assert "could not be reached" in info.value.message
    assert _sub(tenant).stripe_customer_id == ""


def test_api_plan_change_answers_with_the_error_message(tenant, stripe, make_user, paid_plans):
    from rest_framework.test import APIClient

    from tenants.models import Membership

    owner = Membership.objects.unscoped().get(tenant=tenant).user
    client = APIClient()
    client.force_login(owner)
    response = client.post("/api/billing/plan", {"plan": "gold"}, format="json")
    assert response.status_code == 400
    assert "plan" in response.json()
    attach_card(tenant)
    response = client.post("/api/billing/plan", {"plan": "team"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"plan": "team", "status": "active", "checkout_url": None}


def test_the_sdk_error_types_are_the_ones_wrapped():
    assert issubclass(stripe_sdk.CardError, stripe_sdk.StripeError)


def test_a_paid_plan_an_operator_assigns_is_billed(
    tenant, stripe, paid_plans, django_capture_on_commit_callbacks
):
    from billing.plans import assign_plan

    from .conftest import remote_items

    with django_capture_on_commit_callbacks(execute=True):
        assign_plan(tenant=tenant, plan_slug="team")
    sub = _sub(tenant)
    assert sub.stripe_customer_id
    assert remote_items(stripe, tenant) == {"byok-team-agent-1000-usd-month": 1}
    assert stripe.v1.subscriptions.retrieve(sub.stripe_subscription_id).collection_method == "send_invoice"
    with django_capture_on_commit_callbacks(execute=True):
        assign_plan(tenant=tenant, plan_slug="free")  # nothing billed any more: cancelled
    assert _sub(tenant).stripe_subscription_id == ""
    assert stripe.v1.subscriptions.retrieve(sub.stripe_subscription_id).status == "canceled"
