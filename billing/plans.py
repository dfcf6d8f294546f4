"""Plans, managed tiers and the subscription: assign a plan (commands, admin), change a plan or an agent's managed
tier (users, paid through Stripe before it applies), keep the Stripe subscription in step, read what a plan allows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from billing import caps
from billing.managed import managed_get, managed_set, schedule_items_sync, tier_for_choice
from billing.models import ManagedAgent, Plan, Subscription
from billing.stripe import sync as stripe_sync
from billing.stripe.client import BillingError, stripe_configured
from billing.stripe.ledger import overage_push
from billing.subscriptions import (
    FREE,
    UnknownPlanError,
    billable_agents,
    ensure_subscription,
    get_plan,
    local_status,
    managed_tier_counts,
    period_of,
    plan_choices,
)
from tenants.audit import SYSTEM, Actor, audit_record
from tenants.models import Agent, Tenant

# The plan lookups live in the `billing.subscriptions` leaf; they stay importable from here.
__all__ = [
    "FREE",
    "ManagedChange",
    "PlanChange",
    "UnknownPlanError",
    "assign_plan",
    "billable_agents",
    "ensure_subscription",
    "get_plan",
    "local_status",
    "managed_change",
    "plan_allows_platform",
    "plan_change",
    "plan_choices",
    "subscription_follow",
]


def assign_plan(*, tenant: Tenant, plan_slug: str | None, actor: Actor = SYSTEM) -> Subscription:
    """Put a tenant on a plan (createtenant, admins) without asking it to pay first. None → free. When a paid
    plan is involved, Stripe follows after the commit (the items sync: customer and subscription created, or the
    plan's item swapped or dropped)."""
    plan = get_plan(plan_slug)
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)
        before = sub.plan.slug
        if plan.is_paid or sub.plan.is_paid:
            transaction.on_commit(partial(schedule_items_sync, tenant.id))
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
        if sub.stripe_subscription_id and managed_tier_counts(tenant):
            # The managed tiers stay billed on the same subscription; only the plan's item goes.
            stripe_sync.subscription_sync_items(tenant, plan=plan)
            return PlanChange(subscription=_apply_plan(tenant, actor, plan), changed=True)
        if sub.stripe_subscription_id:
            _cancel_with_final_overage(tenant, sub)
        return PlanChange(
            subscription=_apply_plan(tenant, actor, plan, stripe_subscription_id=""), changed=True
        )
    customer_id = stripe_sync.ensure_customer(tenant)
    if sub.stripe_subscription_id:
        updated = stripe_sync.subscription_change_plan(sub, plan)
        if not _confirms(updated, stripe_sync.stripe_plan_id(plan)):
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
        if not _confirms(stripe_sub, stripe_sync.stripe_plan_id(plan)):
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
    url = stripe_sync.checkout_url(
        tenant, stripe_sync.wanted_items(tenant, plan=plan), metadata={"plan": plan.slug}
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="billing.plan.checkout",
        obj=sub,
        object_repr=f"plan of {tenant.slug}",
        changes={"plan": plan.slug},
    )
    return PlanChange(subscription=sub, checkout_url=url)


def _confirms(stripe_sub: dict[str, Any], plan_id: str) -> bool:
    """Stripe holds the subscription live (paid or trialing) with an item on this Stripe plan."""
    if stripe_sub.get("status") not in {"active", "trialing"}:
        return False
    return plan_id in stripe_sync.stripe_items(stripe_sub)


def _cancel_with_final_overage(tenant: Tenant, sub: Subscription) -> None:
    pushed = overage_push(tenant=tenant, period=period_of())  # onto the final invoice
    if pushed.action == "failed":
        raise BillingError(pushed.message, code="overage_push_failed", retryable=True)
    stripe_sync.subscription_cancel(sub)


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


# --- managed tiers per agent ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManagedChange:
    managed: ManagedAgent | None  # the agent's row now (None: not managed)
    checkout_url: str | None = None  # set when a card is needed: send the user there; applied on the webhook
    changed: bool = False


def managed_change(
    *, tenant: Tenant, actor: Actor, agent: Agent | None, tier_slug: str | None
) -> ManagedChange:
    """A user turns managed LLM on for an agent (None: the default agent), changes its tier, or turns it off.

    Off: at once; Stripe follows (one agent less on the item, prorated; the subscription is cancelled with the
    final overage when nothing is billed any more). On or another tier: it applies once paid for — added to the live
    subscription (Stripe prorates), or a new subscription charged to the card on file, or else a Stripe Checkout
    URL; the checkout.session.completed webhook applies it then.

    Raises ValidationError (unknown tier, inactive agent) and `BillingError` (a user-facing message) when Stripe
    refuses or fails; nothing changes then.
    """
    tier = tier_for_choice(tier_slug)
    if agent is not None and agent.tenant_id != tenant.id:
        raise ValidationError({"agent": ["No such agent."]})
    current = managed_get(tenant=tenant, agent=agent)
    if (current.tier_id if current else None) == (tier.pk if tier else None):
        return ManagedChange(managed=current)
    if tier is None or tier.price_usd <= 0:
        row = managed_set(tenant=tenant, actor=actor, agent=agent, tier_slug=tier.slug if tier else None)
        return ManagedChange(managed=row, changed=True)
    if agent is not None and not agent.is_active:
        raise ValidationError(
            {"agent": ["This agent is inactive; activate it before turning managed LLM on."]}
        )
    counts = managed_tier_counts(tenant)
    if current is not None:
        counts[current.tier.slug] -= 1
    counts[tier.slug] = counts.get(tier.slug, 0) + 1
    sub = ensure_subscription(tenant)
    customer_id = stripe_sync.ensure_customer(tenant)  # BillingError when Stripe is not configured
    wanted = stripe_sync.wanted_items(tenant, tiers=counts)
    tier_plan = stripe_sync.tier_stripe_plan_id(tier)
    stripe_sub = stripe_sync.subscription_retrieve(sub) if sub.stripe_subscription_id else None
    if stripe_sub is not None and stripe_sub.get("status") not in {"canceled", "incomplete_expired"}:
        changes = stripe_sync.item_changes(stripe_sub, wanted)
        if changes:
            stripe_sync.subscription_update_items(sub, changes)  # Stripe prorates the new agent
        row = managed_set(tenant=tenant, actor=actor, agent=agent, tier_slug=tier.slug)
        return ManagedChange(managed=row, changed=True)
    if sub.stripe_subscription_id:  # gone in Stripe (its webhook was missed): start a new one below
        Subscription.objects.for_tenant(tenant).filter(pk=sub.pk).update(stripe_subscription_id="")
    if stripe_sync.customer_has_payment_method(customer_id):
        with transaction.atomic():
            locked = ensure_subscription(tenant, lock=True)  # one subscription per tenant, even when racing
            if locked.stripe_subscription_id:
                raise BillingError(
                    "Your subscription changed meanwhile; please try again.", code="retry", retryable=True
                )
            created = stripe_sync.subscription_create(tenant, wanted, charge=True)
            if not _confirms(created, tier_plan):
                locked.stripe_subscription_id = created["id"]
                stripe_sync.subscription_cancel(locked)
                raise BillingError(
                    "The first payment failed, so managed LLM was not turned on. Update your card "
                    "(Billing → Payment) and try again.",
                    code="payment_failed",
                )
            Subscription.objects.for_tenant(tenant).filter(pk=sub.pk).update(
                stripe_subscription_id=created["id"], status=local_status(str(created["status"]))
            )
            row = managed_set(tenant=tenant, actor=actor, agent=agent, tier_slug=tier.slug)
        return ManagedChange(managed=row, changed=True)
    url = stripe_sync.checkout_url(
        tenant,
        wanted,
        metadata={"managed_tier": tier.slug, "managed_agent": str(agent.pk) if agent else ""},
        success_path=f"/agents/{agent.slug}/" if agent else "/billing/",
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="billing.managed.checkout",
        obj=agent,
        object_type="agent",
        object_id=str(agent.pk) if agent else "default",
        object_repr=agent.slug if agent else "workspace default agent",
        changes={"tier": tier.slug},
    )
    return ManagedChange(managed=current, checkout_url=url)


def subscription_follow(*, tenant: Tenant) -> str:
    """Keep the Stripe subscription in step with what the tenant has (the items sync task): items and quantities
    updated, the subscription created when an operator put the tenant on a paid tier, and cancelled (with the final
    overage on its last invoice) when nothing is billed any more."""
    if not stripe_configured():
        return "skipped"
    action = stripe_sync.subscription_sync_items(tenant)
    if action == "empty":
        sub = ensure_subscription(tenant)
        _cancel_with_final_overage(tenant, sub)
        Subscription.objects.for_tenant(tenant).filter(pk=sub.pk).update(
            stripe_subscription_id="", quantity=1
        )
        caps.invalidate(tenant.id)
        return "cancelled"
    return action
