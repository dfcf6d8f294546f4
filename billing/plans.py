"""Plans and subscriptions: assign a plan (commands, admin), change it (users, through Stripe), read what it allows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from django.core.exceptions import ValidationError
from django.db import transaction

from tenants.audit import SYSTEM, Actor, audit_record
from tenants.models import Agent, Tenant

from . import caps
from .models import Plan, Subscription

FREE = "free"


class UnknownPlanError(ValidationError, ValueError):
    """An unknown plan slug: a field error for forms/commands, a ValueError for everything else."""


def plan_choices() -> list[str]:
    return list(Plan.objects.filter(is_active=True).values_list("slug", flat=True))


def get_plan(slug: str | None) -> Plan:
    slug = (slug or FREE).strip().lower()
    plan = Plan.objects.filter(slug=slug, is_active=True).first()
    if plan is None:
        raise UnknownPlanError({"plan": [f"Unknown plan “{slug}”. Choose one of: {', '.join(plan_choices())}."]})
    return plan


def billable_agents(tenant: Tenant) -> int:
    """Agents billed on per-agent plans: the active ones, at least one."""
    return max(1, Agent.objects.unscoped().filter(tenant=tenant, is_active=True).count())


def ensure_subscription(tenant: Tenant, *, lock: bool = False) -> Subscription:
    """The tenant's Subscription row, created on the free plan when missing."""
    qs = Subscription.objects.unscoped().select_related("plan")
    if lock:
        qs = qs.select_for_update(of=("self",))
    sub = qs.filter(tenant=tenant).first()
    if sub is not None:
        return sub
    Subscription.objects.unscoped().get_or_create(tenant=tenant, defaults={"plan": get_plan(FREE)})
    return qs.get(tenant=tenant)


def assign_plan(*, tenant: Tenant, plan_slug: str | None, actor: Actor = SYSTEM) -> Subscription:
    """Put a tenant on a plan locally (createtenant, admins); Stripe is not involved. None → free."""
    plan = get_plan(plan_slug)
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)
        before = sub.plan.slug
        sub.plan = plan
        sub.quantity = billable_agents(tenant) if plan.per_agent else 1
        sub.save(update_fields=["plan", "quantity", "updated_at"])
        audit_record(tenant=tenant, actor=actor, action="billing.plan.assign", obj=sub,
                     object_repr=f"plan of {tenant.slug}", changes={"plan": [before, plan.slug]})
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
    """A user changes plan: free cancels the Stripe subscription; a paid plan updates it, creates it when a
    card is on file, or returns a Stripe Checkout URL to collect one (the plan applies once Stripe confirms).

    Raises `billing.stripe_client.BillingError` with a user-facing message when Stripe refuses or fails.
    """
    from . import stripe_sync
    from .stripe_client import BillingError

    plan = get_plan(plan_slug)
    sub = ensure_subscription(tenant)
    if sub.plan_id == plan.id and (not plan.is_paid or sub.stripe_subscription_id):
        return PlanChange(subscription=sub)
    if not plan.is_paid:
        if sub.stripe_subscription_id:
            from .ledger import overage_push
            from .usage import period_of

            pushed = overage_push(tenant=tenant, period=period_of())  # onto the final invoice
            if pushed.action == "failed":
                raise BillingError(pushed.message, code="overage_push_failed", retryable=True)
            stripe_sync.subscription_cancel(sub)
        return PlanChange(subscription=_apply_plan(tenant, actor, plan, stripe_subscription_id=""), changed=True)
    customer_id = stripe_sync.ensure_customer(tenant)
    if sub.stripe_subscription_id:
        stripe_sync.subscription_change_plan(sub, plan)
        return PlanChange(subscription=_apply_plan(tenant, actor, plan), changed=True)
    if stripe_sync.customer_has_payment_method(customer_id):
        stripe_sub = stripe_sync.subscription_start(tenant, plan)
        if stripe_sub.get("status") in {"incomplete", "incomplete_expired"}:
            sub.stripe_subscription_id = stripe_sub["id"]
            stripe_sync.subscription_cancel(sub)
            raise BillingError("The first payment failed, so your plan was not changed. Update your card "
                               "(Billing → Payment) and try again.", code="payment_failed")
        return PlanChange(subscription=_apply_plan(tenant, actor, plan, stripe_subscription_id=stripe_sub["id"],
                                                   status=stripe_sub["status"]), changed=True)
    url = stripe_sync.checkout_url(tenant, plan)
    audit_record(tenant=tenant, actor=actor, action="billing.plan.checkout", obj=sub,
                 object_repr=f"plan of {tenant.slug}", changes={"plan": plan.slug})
    return PlanChange(subscription=sub, checkout_url=url)


def _apply_plan(tenant: Tenant, actor: Actor, plan: Plan, *, stripe_subscription_id: str | None = None,
                status: str | None = None) -> Subscription:
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
        audit_record(tenant=tenant, actor=actor, action="billing.plan.change", obj=sub,
                     object_repr=f"plan of {tenant.slug}", changes={"plan": [before, plan.slug]})
        transaction.on_commit(partial(caps.invalidate, tenant.id))
    caps.invalidate(tenant.id)
    return sub


def local_status(stripe_status: str) -> str:
    if stripe_status in {"past_due", "unpaid"}:
        return Subscription.Status.PAST_DUE
    if stripe_status in {"canceled", "incomplete_expired"}:
        return Subscription.Status.CANCELED
    if stripe_status in Subscription.Status.values:
        return stripe_status
    return Subscription.Status.ACTIVE
