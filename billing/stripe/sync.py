"""Mirror tenants, plans and managed tiers to Stripe: customers, Stripe Plans, the subscription and its items,
hosted Checkout/Portal pages, invoices.

A tenant has one Stripe subscription: one item per managed tier (quantity = the agents on it) and, on a paid
workspace plan, that plan's item. Every call goes through `stripe_client()` inside `stripe_errors(...)`; the
project never sees a card number.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from billing.models import ManagedTier, Plan, Subscription
from billing.stripe.client import (
    BillingError,
    as_dict,
    is_missing,
    stripe_client,
    stripe_configured,
    stripe_errors,
)
from billing.subscriptions import billable_agents, ensure_subscription, local_status, managed_tier_counts
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


def _retrieve_or_create_plan(
    plan_id: str, *, cents: int, product: str, nickname: str, metadata: dict[str, str]
) -> None:
    """The Stripe Plan `plan_id` (monthly, USD), created when Stripe does not have it."""
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
                    "amount": cents,
                    "product": {"name": product},
                    "nickname": nickname,
                    "metadata": metadata,
                },
                options={"idempotency_key": f"byok-plan-{plan_id}"},
            )


def ensure_stripe_plan(plan: Plan) -> str:
    """The Stripe Plan (single-item subscriptions) for a paid plan, created when missing."""
    plan_id = stripe_plan_id(plan)
    _retrieve_or_create_plan(
        plan_id,
        cents=_cents(plan.price_per_agent_usd if plan.per_agent else plan.price_flat_usd),
        product=f"BYOK {plan.name}",
        nickname=plan.name,
        metadata={"plan": plan.slug},
    )
    if plan.stripe_plan_id != plan_id:
        Plan.objects.filter(pk=plan.pk).update(stripe_plan_id=plan_id)
        plan.stripe_plan_id = plan_id
    return plan_id


def tier_stripe_plan_id(tier: ManagedTier) -> str:
    """The Stripe Plan of a managed tier (per agent per month); a new price gets a new id."""
    return f"byok-tier-{tier.slug}-{_cents(tier.price_usd)}-{CURRENCY}-month"


def ensure_tier_stripe_plan(tier: ManagedTier) -> str:
    """The Stripe Plan for a managed tier, created when missing."""
    plan_id = tier_stripe_plan_id(tier)
    _retrieve_or_create_plan(
        plan_id,
        cents=_cents(tier.price_usd),
        product=f"Managed LLM {tier.name} (per agent)",
        nickname=tier.name,
        metadata={"tier": tier.slug},
    )
    if tier.stripe_plan_id != plan_id:
        ManagedTier.objects.filter(pk=tier.pk).update(stripe_plan_id=plan_id)
        tier.stripe_plan_id = plan_id
    return plan_id


def plan_for_stripe_plan(stripe_plan: str | None, slug_hint: str | None = None) -> Plan | None:
    """The active workspace plan a Stripe Plan id stands for (a managed tier's is none of them)."""
    plans = Plan.objects.filter(is_active=True)
    if slug_hint and (plan := plans.filter(slug=slug_hint).first()):
        return plan
    if not stripe_plan or stripe_plan.startswith("byok-tier-"):
        return None
    if plan := plans.filter(stripe_plan_id=stripe_plan).first():
        return plan
    if stripe_plan.startswith("byok-"):
        return plans.filter(slug=stripe_plan.split("-")[1]).first()
    return None


def customer_has_payment_method(customer_id: str) -> bool:
    with stripe_errors("customer retrieve"):
        customer = as_dict(stripe_client().v1.customers.retrieve(customer_id))
    settings_ = customer.get("invoice_settings") or {}
    return bool(settings_.get("default_payment_method") or customer.get("default_source"))


# --- the subscription's items -----------------------------------------------------------------------------


def wanted_items(
    tenant: Tenant, *, plan: Plan | None = None, tiers: dict[str, int] | None = None
) -> dict[str, int]:
    """Stripe Plan id → quantity the tenant's subscription should carry: each managed tier with its agents and,
    on a paid workspace plan (`plan`, else the current one), that plan. Creates the Stripe Plans it names.
    `tiers` (slug → agents) overrides the stored managed agents: what a change about to be paid would make."""
    plan = plan or ensure_subscription(tenant).plan
    counts = managed_tier_counts(tenant) if tiers is None else tiers
    items: dict[str, int] = {}
    if plan.is_paid:
        items[ensure_stripe_plan(plan)] = billable_agents(tenant) if plan.per_agent else 1
    for tier in ManagedTier.objects.filter(slug__in=[slug for slug, n in counts.items() if n > 0]):
        items[ensure_tier_stripe_plan(tier)] = counts[tier.slug]
    return items


def wanted_items_offline(tenant: Tenant) -> dict[str, int]:
    """`wanted_items` without calling Stripe (the ids only): what reconciliation compares against."""
    sub = ensure_subscription(tenant)
    items: dict[str, int] = {}
    if sub.plan.is_paid:
        items[stripe_plan_id(sub.plan)] = billable_agents(tenant) if sub.plan.per_agent else 1
    counts = managed_tier_counts(tenant)
    for tier in ManagedTier.objects.filter(slug__in=list(counts)):
        items[tier_stripe_plan_id(tier)] = counts[tier.slug]
    return items


def stripe_items(stripe_sub: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Stripe Plan id → (item id, quantity) of a retrieved subscription."""
    out: dict[str, tuple[str, int]] = {}
    for item in (stripe_sub.get("items") or {}).get("data") or []:
        quantity = int(item.get("quantity") or 0)  # a webhook's body: not a number is malformed (ValueError)
        plan_id = (item.get("plan") or {}).get("id") or (item.get("price") or {}).get("id")
        if plan_id:
            out[str(plan_id)] = (str(item.get("id") or ""), quantity)
    return out


def item_changes(stripe_sub: dict[str, Any], wanted: dict[str, int]) -> list[dict[str, Any]]:
    """The `items` of a subscription update that turns what Stripe holds into `wanted` (Stripe prorates)."""
    current = stripe_items(stripe_sub)
    changes: list[dict[str, Any]] = []
    for plan_id, (item_id, quantity) in current.items():
        if plan_id not in wanted:
            changes.append({"id": item_id, "deleted": True})
        elif wanted[plan_id] != quantity:
            changes.append({"id": item_id, "quantity": wanted[plan_id]})
    changes += [{"plan": p, "quantity": q} for p, q in wanted.items() if p not in current]
    return changes


def subscription_create(
    tenant: Tenant,
    items: dict[str, int],
    *,
    metadata: dict[str, str] | None = None,
    charge: bool | None = None,
) -> dict[str, Any]:
    """Create the tenant's Stripe subscription with `items`. A customer with a card is charged (a declined first
    payment is an error, not an incomplete subscription); without one (a tenant an operator put on a paid tier)
    Stripe sends an invoice due in 30 days. `charge` forces the first (a user paying now)."""
    customer_id = ensure_customer(tenant)
    if charge is None:
        charge = customer_has_payment_method(customer_id)
    params: Any = {
        "customer": customer_id,
        "items": [{"plan": p, "quantity": q} for p, q in items.items()],
        "metadata": {"tenant": tenant.slug, **(metadata or {})},
    }
    if charge:
        params["payment_behavior"] = "error_if_incomplete"
    else:
        params["collection_method"] = "send_invoice"
        params["days_until_due"] = 30
    key = "-".join(f"{p}x{q}" for p, q in sorted(items.items()))
    with stripe_errors("subscription create"):
        return as_dict(
            stripe_client().v1.subscriptions.create(
                params=params, options={"idempotency_key": f"byok-sub-{tenant.id}-{customer_id}-{key}"}
            )
        )


def subscription_update_items(sub: Subscription, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply item changes to the live subscription (the one place that sends several items in an update)."""
    with stripe_errors("subscription update"):
        params: Any = {"items": changes}
        return as_dict(stripe_client().v1.subscriptions.update(sub.stripe_subscription_id, params=params))


def subscription_start(tenant: Tenant, plan: Plan) -> dict[str, Any]:
    """Create the Stripe subscription for a paid workspace plan (card on file), with the managed tiers' items."""
    return subscription_create(
        tenant, wanted_items(tenant, plan=plan), metadata={"plan": plan.slug}, charge=True
    )


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


def subscription_change_plan(sub: Subscription, plan: Plan) -> dict[str, Any]:
    """Move the live subscription to a paid workspace plan, keeping the managed tiers' items."""
    stripe_sub = subscription_retrieve(sub)
    if stripe_sub is None:
        raise BillingError(
            "The Stripe subscription no longer exists; choose the plan again to start a new one.",
            code="subscription_missing",
        )
    changes = item_changes(stripe_sub, wanted_items(sub.tenant, plan=plan))
    if not changes:
        return stripe_sub
    return subscription_update_items(sub, changes)


def subscription_sync_items(tenant: Tenant, *, plan: Plan | None = None) -> str:
    """Make Stripe bill what the tenant has: its subscription carries `wanted_items` (updated in place, Stripe
    prorates), created with the customer on the first billing action when items are wanted and there is none.

    Returns created | updated | unchanged | empty (nothing to bill while a subscription lives: the caller decides
    whether to cancel) | gone (the subscription no longer exists in Stripe) | skipped (Stripe not configured).
    """
    if not stripe_configured():
        return "skipped"
    sub = ensure_subscription(tenant)
    wanted = wanted_items(tenant, plan=plan)
    if not sub.stripe_subscription_id:
        if not wanted:
            return "unchanged"
        with transaction.atomic():
            sub = ensure_subscription(tenant, lock=True)  # one creator at a time per tenant
            if sub.stripe_subscription_id:
                return "unchanged"  # another worker created it while we waited; its sync covers the items
            created = subscription_create(tenant, wanted)
            Subscription.objects.for_tenant(tenant).filter(pk=sub.pk).update(
                stripe_subscription_id=created["id"],
                status=local_status(str(created.get("status") or "active")),
            )
        return "created"
    stripe_sub = subscription_retrieve(sub)
    if stripe_sub is None or stripe_sub.get("status") in {"canceled", "incomplete_expired"}:
        return "gone"
    if not wanted:
        return "empty"
    changes = item_changes(stripe_sub, wanted)
    if (plan or sub.plan).per_agent:
        quantity = billable_agents(tenant)
        if sub.quantity != quantity:
            Subscription.objects.for_tenant(tenant).filter(pk=sub.pk).update(quantity=quantity)
    if not changes:
        return "unchanged"
    subscription_update_items(sub, changes)
    return "updated"


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


def checkout_url(
    tenant: Tenant, items: dict[str, int], *, metadata: dict[str, str], success_path: str = "/billing/"
) -> str:
    """A Stripe Checkout page (card collected by Stripe) that starts the subscription with `items`; the
    checkout.session.completed webhook applies what `metadata` says was bought."""
    customer_id = ensure_customer(tenant)
    base = settings.SITE_URL.rstrip("/")
    meta = {"tenant": tenant.slug, **metadata}
    with stripe_errors("checkout session"):
        session = stripe_client().v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": tenant.slug,
                "line_items": [{"price": p, "quantity": q} for p, q in items.items()],
                "subscription_data": {"metadata": meta},
                "metadata": meta,
                "success_url": f"{base}{success_path}?checkout=success",
                "cancel_url": f"{base}{success_path}?checkout=cancel",
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
