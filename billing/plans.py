"""Plans and subscriptions: assign a plan (commands, admin), change it (users, through Stripe), read what it allows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import transaction

from billing import caps
from billing.models import Plan, Subscription
from billing.stripe import sync as stripe_sync
from billing.stripe.client import BillingError, as_dict
from billing.stripe.ledger import overage_push
from billing.subscriptions import (
    FREE,
    UnknownPlanError,
    billable_agents,
    ensure_subscription,
    get_plan,
    local_status,
    period_of,
    plan_choices,
)
from tenants.audit import SYSTEM, Actor, audit_record
from tenants.models import Tenant

# The plan lookups live in the `billing.subscriptions` leaf; they stay importable from here.
__all__ = [
    "FREE",
    "PlanChange",
    "UnknownPlanError",
    "assign_plan",
    "billable_agents",
    "ensure_subscription",
    "get_plan",
    "local_status",
    "plan_allows_platform",
    "plan_change",
    "plan_choices",
]


def assign_plan(*, tenant: Tenant, plan_slug: str | None, actor: Actor = SYSTEM) -> Subscription:
    """Put a tenant on a plan locally (createtenant, admins); Stripe is not involved. None → free."""
    plan = get_plan(plan_slug)
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)
        before = sub.plan.slug
        sub.plan = plan
        sub.quantity = billable_agents(tenant) if plan.per_agent else 1
        sub.save(update_fields=["plan", "quantity", "updated_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action="billing.plan.assign",
            obj=sub,
            object_repr=f"plan of {tenant.slug}",
            changes={"plan": [before, plan.slug]},
        )
        transaction.on_commit(partial(caps.invalidate, tenant.id))
    caps.invalidate(tenant.id)
    return sub


def plan_allows_platform(tenant: Tenant) -> bool:
    """Platform-managed keys are allowed: the plan includes them and no payment is overdue past the grace."""
    return caps.limits_for(tenant.id).platform_allowed


@dataclass(frozen=True, slots=True)
class PlanChange:
    subscription: Subscription
    checkout_url: str | None = None  # set when a card is needed: send the user there
    changed: bool = False


def plan_change(*, tenant: Tenant, actor: Actor, plan_slug: str) -> PlanChange:
    """A user changes plan, to a public plan only: an unpaid one cancels the Stripe subscription first; a paid
    plan updates the subscription, creates it when a card is on file, or returns a Stripe Checkout URL to collect
    one. A paid plan applies only once Stripe confirms it (an active subscription on that plan, or the webhook).

    Raises `billing.stripe.client.BillingError` with a user-facing message when Stripe refuses or fails.
    """
    plan = get_plan(plan_slug, public_only=True)
    sub = ensure_subscription(tenant)
    if sub.plan_id == plan.id and (not plan.is_paid or sub.stripe_subscription_id):
        return PlanChange(subscription=sub)
    if not plan.is_paid:
        if sub.stripe_subscription_id:
            pushed = overage_push(tenant=tenant, period=period_of())  # onto the final invoice
            if pushed.action == "failed":
                raise BillingError(pushed.message, code="overage_push_failed", retryable=True)
            stripe_sync.subscription_cancel(sub)
        return PlanChange(
            subscription=_apply_plan(tenant, actor, plan, stripe_subscription_id=""), changed=True
        )
    customer_id = stripe_sync.ensure_customer(tenant)
    if sub.stripe_subscription_id:
        updated = as_dict(stripe_sync.subscription_change_plan(sub, plan))
        if not _confirms(updated, plan):
            raise BillingError(
                "Stripe did not confirm the new plan, so your plan was not changed. Check your "
                "payment method (Billing → Payment) and try again.",
                code="payment_failed",
            )
        return PlanChange(
            subscription=_apply_plan(tenant, actor, plan, status=updated["status"]), changed=True
        )
    if stripe_sync.customer_has_payment_method(customer_id):
        stripe_sub = stripe_sync.subscription_start(tenant, plan)
        if not _confirms(stripe_sub, plan):
            sub.stripe_subscription_id = stripe_sub["id"]
            stripe_sync.subscription_cancel(sub)
            raise BillingError(
                "The first payment failed, so your plan was not changed. Update your card "
                "(Billing → Payment) and try again.",
                code="payment_failed",
            )
        return PlanChange(
            subscription=_apply_plan(
                tenant, actor, plan, stripe_subscription_id=stripe_sub["id"], status=stripe_sub["status"]
            ),
            changed=True,
        )
    url = stripe_sync.checkout_url(tenant, plan)
    audit_record(
        tenant=tenant,
        actor=actor,
        action="billing.plan.checkout",
        obj=sub,
        object_repr=f"plan of {tenant.slug}",
        changes={"plan": plan.slug},
    )
    return PlanChange(subscription=sub, checkout_url=url)


def _confirms(stripe_sub: dict[str, Any], plan: Plan) -> bool:
    """Stripe holds the subscription live (paid or trialing) on this plan's Stripe plan."""
    if stripe_sub.get("status") not in {"active", "trialing"}:
        return False
    items = (stripe_sub.get("items") or {}).get("data") or []
    stripe_plan = ((items[0].get("plan") or {}).get("id") if items else None) or (
        stripe_sub.get("plan") or {}
    ).get("id")
    return stripe_plan == stripe_sync.stripe_plan_id(plan)


def _apply_plan(
    tenant: Tenant,
    actor: Actor,
    plan: Plan,
    *,
    stripe_subscription_id: str | None = None,
    status: str | None = None,
) -> Subscription:
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)
        before = sub.plan.slug
        sub.plan = plan
        sub.quantity = billable_agents(tenant) if plan.per_agent else 1
        if stripe_subscription_id is not None:
            sub.stripe_subscription_id = stripe_subscription_id
        if status is not None:
            sub.status = local_status(status)
        elif not plan.is_paid:
            sub.status, sub.past_due_since = Subscription.Status.ACTIVE, None
        sub.save()
        audit_record(
            tenant=tenant,
            actor=actor,
            action="billing.plan.change",
            obj=sub,
            object_repr=f"plan of {tenant.slug}",
            changes={"plan": [before, plan.slug]},
        )
        transaction.on_commit(partial(caps.invalidate, tenant.id))
    caps.invalidate(tenant.id)
    return sub
