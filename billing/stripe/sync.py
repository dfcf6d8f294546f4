"""Mirror tenants and plans to Stripe: customers, plans, subscriptions, hosted Checkout/Portal pages, invoices.

Every call goes through `stripe_client()` inside `stripe_errors(...)`; the project never sees a card number.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from billing.models import Plan, Subscription
from billing.stripe.client import BillingError, as_dict, is_missing, stripe_client, stripe_errors
from billing.subscriptions import billable_agents, ensure_subscription
from tenants.models import Membership, Tenant
from tenants.roles import Role

log = logging.getLogger(__name__)
CURRENCY = "usd"


def _cents(amount: Any) -> int:
    return int((amount * 100).to_integral_value())


def _owner_email(tenant: Tenant) -> str | None:
    m = (
        Membership.objects.for_tenant(tenant)
        .filter(role__in=[Role.OWNER, Role.BILLING])
        .select_related("user")
        .order_by("role", "created_at")
        .first()
    )
    return m.user.email if m else None


def ensure_customer(tenant: Tenant) -> str:
    """The tenant's Stripe customer id, created on the first billing action (metadata carries the slug)."""
    sub = ensure_subscription(tenant)
    if sub.stripe_customer_id:
        return sub.stripe_customer_id
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)  # one creator at a time per tenant
        if sub.stripe_customer_id:
            return sub.stripe_customer_id
        params: Any = {
            "name": tenant.name,
            "metadata": {"tenant": tenant.slug, "tenant_id": str(tenant.id)},
        }
        if email := _owner_email(tenant):
            params["email"] = email
        with stripe_errors("customer create"):
            customer = stripe_client().v1.customers.create(
                params=params,
                options={
                    "idempotency_key": f"byok-customer-{tenant.id}-{int(tenant.created_at.timestamp())}"
                },
            )
        sub.stripe_customer_id = customer.id
        sub.save(update_fields=["stripe_customer_id", "updated_at"])
    return sub.stripe_customer_id


def stripe_plan_id(plan: Plan) -> str:
    """A Stripe Plan id that changes with the price, so an edited price never reuses an old Stripe plan."""
    unit = "agent" if plan.per_agent else "flat"
    cents = _cents(plan.price_per_agent_usd if plan.per_agent else plan.price_flat_usd)
    return f"byok-{plan.slug}-{unit}-{cents}-{CURRENCY}-month"


def ensure_stripe_plan(plan: Plan) -> str:
    """The Stripe Plan (single-item subscriptions) for a paid plan, created when missing."""
    plan_id = stripe_plan_id(plan)
    client = stripe_client()
    try:
        with stripe_errors("plan retrieve"):
            client.v1.plans.retrieve(plan_id)
    except BillingError as exc:
        if not is_missing(exc):
            raise
        with stripe_errors("plan create"):
            client.v1.plans.create(
                params={
                    "id": plan_id,
                    "currency": CURRENCY,
                    "interval": "month",
                    "amount": _cents(plan.price_per_agent_usd if plan.per_agent else plan.price_flat_usd),
                    "product": {"name": f"BYOK {plan.name}"},
                    "nickname": plan.name,
                    "metadata": {"plan": plan.slug},
                },
                options={"idempotency_key": f"byok-plan-{plan_id}"},
            )
    if plan.stripe_plan_id != plan_id:
        Plan.objects.filter(pk=plan.pk).update(stripe_plan_id=plan_id)
        plan.stripe_plan_id = plan_id
    return plan_id


def plan_for_stripe_plan(stripe_plan: str | None, slug_hint: str | None = None) -> Plan | None:
    if slug_hint and (plan := Plan.objects.filter(slug=slug_hint).first()):
        return plan
    if not stripe_plan:
        return None
    if plan := Plan.objects.filter(stripe_plan_id=stripe_plan).first():
        return plan
    if stripe_plan.startswith("byok-"):
        return Plan.objects.filter(slug=stripe_plan.split("-")[1]).first()
    return None


def customer_has_payment_method(customer_id: str) -> bool:
    with stripe_errors("customer retrieve"):
        customer = as_dict(stripe_client().v1.customers.retrieve(customer_id))
    settings_ = customer.get("invoice_settings") or {}
    return bool(settings_.get("default_payment_method") or customer.get("default_source"))


def subscription_start(tenant: Tenant, plan: Plan) -> dict[str, Any]:
    """Create the Stripe subscription (card on file): one item, quantity = Agents on per-agent plans."""
    customer_id = ensure_customer(tenant)
    plan_id = ensure_stripe_plan(plan)
    quantity = billable_agents(tenant) if plan.per_agent else 1
    with stripe_errors("subscription create"):
        return as_dict(
            stripe_client().v1.subscriptions.create(
                params={
                    "customer": customer_id,
                    "items": [{"plan": plan_id, "quantity": quantity}],
                    "metadata": {"tenant": tenant.slug, "plan": plan.slug},
                    # A declined first payment is an error (card message for the user), not an incomplete subscription.
                    "payment_behavior": "error_if_incomplete",
                },
                options={"idempotency_key": f"byok-sub-{tenant.id}-{plan_id}-{customer_id}"},
            )
        )


def _first_item(stripe_sub: dict[str, Any]) -> dict[str, Any] | None:
    data = (stripe_sub.get("items") or {}).get("data") or []
    return data[0] if data else None


def subscription_retrieve(sub: Subscription) -> dict[str, Any] | None:
    if not sub.stripe_subscription_id:
        return None
    try:
        with stripe_errors("subscription retrieve"):
            return as_dict(stripe_client().v1.subscriptions.retrieve(sub.stripe_subscription_id))
    except BillingError as exc:
        if is_missing(exc):
            return None
        raise


def subscription_change_plan(sub: Subscription, plan: Plan) -> Any:
    plan_id = ensure_stripe_plan(plan)
    stripe_sub = subscription_retrieve(sub)
    if stripe_sub is None:
        raise BillingError(
            "The Stripe subscription no longer exists; choose the plan again to start a new one.",
            code="subscription_missing",
        )
    item = _first_item(stripe_sub)
    quantity = billable_agents(sub.tenant) if plan.per_agent else 1
    params: Any = {
        "items": [{"id": item["id"], "plan": plan_id, "quantity": quantity}]
        if item
        else [{"plan": plan_id, "quantity": quantity}],
        "metadata": {"plan": plan.slug},
    }
    with stripe_errors("subscription update"):
        return stripe_client().v1.subscriptions.update(sub.stripe_subscription_id, params=params)


def subscription_set_quantity(sub: Subscription, quantity: int) -> Any:
    stripe_sub = subscription_retrieve(sub)
    if stripe_sub is None:
        raise BillingError("The Stripe subscription no longer exists.", code="subscription_missing")
    item = _first_item(stripe_sub)
    entry: Any = {"quantity": quantity}
    if item:
        entry["id"] = item["id"]
        entry["plan"] = (item.get("plan") or {}).get("id") or stripe_plan_id(sub.plan)
    with stripe_errors("subscription quantity"):
        params: Any = {"items": [entry]}
        return stripe_client().v1.subscriptions.update(sub.stripe_subscription_id, params=params)


def stripe_quantity(stripe_sub: dict[str, Any]) -> int:
    item = _first_item(stripe_sub)
    if item is not None and item.get("quantity") is not None:
        return int(item["quantity"])
    return int(stripe_sub.get("quantity") or 1)


def subscription_sync_quantity(*, tenant: Tenant) -> bool:
    """Per-agent plans: make the Stripe quantity match the active Agents; True when it changed."""
    sub = ensure_subscription(tenant)
    if not (sub.plan.per_agent and sub.stripe_subscription_id):
        return False
    wanted = billable_agents(tenant)
    stripe_sub = subscription_retrieve(sub)
    if stripe_sub is None or stripe_quantity(stripe_sub) == wanted:
        if sub.quantity != wanted:
            Subscription.objects.for_tenant(tenant).filter(pk=sub.pk).update(quantity=wanted)
        return False
    subscription_set_quantity(sub, wanted)
    Subscription.objects.for_tenant(tenant).filter(pk=sub.pk).update(quantity=wanted)
    return True


def subscription_cancel(sub: Subscription) -> None:
    if not sub.stripe_subscription_id:
        return
    try:
        with stripe_errors("subscription cancel"):
            # invoice_now: the final invoice carries the pending overage items, which would otherwise never bill
            stripe_client().v1.subscriptions.cancel(
                sub.stripe_subscription_id, params={"invoice_now": True, "prorate": True}
            )
    except BillingError as exc:
        if not is_missing(exc):  # already gone is what we wanted
            raise


def checkout_url(tenant: Tenant, plan: Plan) -> str:
    """A Stripe Checkout page (card collected by Stripe) that starts the subscription on `plan`."""
    customer_id = ensure_customer(tenant)
    plan_id = ensure_stripe_plan(plan)
    quantity = billable_agents(tenant) if plan.per_agent else 1
    base = settings.SITE_URL.rstrip("/")
    with stripe_errors("checkout session"):
        session = stripe_client().v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": tenant.slug,
                "line_items": [{"price": plan_id, "quantity": quantity}],
                "subscription_data": {"metadata": {"tenant": tenant.slug, "plan": plan.slug}},
                "metadata": {"tenant": tenant.slug, "plan": plan.slug},
                "success_url": f"{base}/billing/?checkout=success",
                "cancel_url": f"{base}/billing/?checkout=cancel",
            }
        )
    return str(session.url)


def portal_url(tenant: Tenant) -> str:
    """A Stripe Billing Portal page where the user updates cards, sees invoices or cancels."""
    customer_id = ensure_customer(tenant)
    with stripe_errors("billing portal session"):
        session = stripe_client().v1.billing_portal.sessions.create(
            params={"customer": customer_id, "return_url": f"{settings.SITE_URL.rstrip('/')}/billing/"}
        )
    return str(session.url)


def list_invoices(tenant: Tenant, *, limit: int = 12) -> list[dict[str, Any]]:
    """The tenant's Stripe invoices, newest first, in the summary's shape."""
    sub = ensure_subscription(tenant)
    if not sub.stripe_customer_id:
        return []
    with stripe_errors("invoice list"):
        page = stripe_client().v1.invoices.list(params={"customer": sub.stripe_customer_id, "limit": limit})
    out = []
    for inv in (as_dict(i) for i in page.data):
        created = inv.get("created")
        out.append(
            {
                "id": inv["id"],
                "number": inv.get("number"),
                "status": inv.get("status"),
                "currency": inv.get("currency"),
                "amount_due_usd": f"{int(inv.get('amount_due') or 0) / 100:.2f}",
                "amount_paid_usd": f"{int(inv.get('amount_paid') or 0) / 100:.2f}",
                "created": datetime.fromtimestamp(int(created), UTC).isoformat() if created else None,
                "hosted_invoice_url": inv.get("hosted_invoice_url"),
            }
        )
    out.sort(key=lambda i: i["created"] or "", reverse=True)
    return out
