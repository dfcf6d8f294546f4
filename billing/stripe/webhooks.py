"""Stripe webhooks: verify the signature, store each event once by id, apply it to the tenant's subscription."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DataError, transaction
from django.http import HttpRequest, JsonResponse
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import caps
from billing.managed import managed_end_all, managed_set
from billing.models import LedgerEntry, Notification, Plan, StripeEvent, Subscription
from billing.notifications import notification_create
from billing.stripe.client import stripe_sdk
from billing.stripe.sync import plan_for_stripe_plan, stripe_items
from billing.subscriptions import FREE, billable_agents, ensure_subscription, local_status
from tenants.audit import SYSTEM
from tenants.models import Agent, Tenant

log = logging.getLogger(__name__)
SIGNATURE_TOLERANCE = 300


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    stripe = stripe_sdk()
    payload = request.body
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        log.error("Stripe webhook received but STRIPE_WEBHOOK_SECRET is empty")
        return JsonResponse({"error": "Webhook secret not configured."}, status=400)
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode(), request.headers.get("Stripe-Signature"), secret, tolerance=SIGNATURE_TOLERANCE
        )
        event = orjson.loads(payload)
    except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError):
        log.warning("Stripe webhook with a bad signature or body refused")
        return JsonResponse({"error": "Invalid signature."}, status=400)
    if not _well_formed(event):
        log.warning("Stripe webhook with a malformed event refused")
        return JsonResponse({"error": "Not a Stripe event."}, status=400)
    try:
        result = event_process(event)
    except MALFORMED as exc:
        # Signed, but not the shape Stripe documents: nothing was stored (one transaction); retrying cannot help.
        log.warning("Stripe event %s (%s) is malformed: %s", event["id"], event["type"], type(exc).__name__)
        return JsonResponse({"error": "Malformed Stripe event."}, status=400)
    except Exception:
        # Nothing was stored (one transaction): Stripe retries the delivery later.
        log.exception("Stripe event %s (%s) failed", event.get("id"), event.get("type"))
        return JsonResponse({"error": "Processing failed; retry later."}, status=500)
    return JsonResponse({"received": True, "result": result})


# What reading a signed event of the wrong shape raises (a missing key, a list where an object belongs, a text
# where a number belongs); anything else (the database) is a 500 that Stripe retries.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, DataError)


def _well_formed(event: Any) -> bool:
    """The envelope every Stripe event has: string id and type, and `data.object` an object."""
    if not isinstance(event, dict):
        return False
    event_id, type_, data = event.get("id"), event.get("type"), event.get("data")
    return (
        isinstance(event_id, str)
        and 0 < len(event_id) <= 100
        and isinstance(type_, str)
        and 0 < len(type_) <= 100
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
    )


def event_process(event: dict[str, Any]) -> str:
    """Apply an event once: the StripeEvent row (unique id) and the changes commit together."""
    with transaction.atomic():
        row, _ = StripeEvent.objects.get_or_create(
            event_id=event["id"], defaults={"type": event["type"], "payload": event}
        )
        row = StripeEvent.objects.select_for_update().get(pk=row.pk)
        if row.processed_at is not None:
            return "duplicate"
        obj = ((event.get("data") or {}).get("object")) or {}
        handler = HANDLERS.get(event["type"])
        tenant = _tenant_for(obj)
        if handler is None:
            result = "ignored"
        elif tenant is None:
            result = "unknown tenant"
            log.warning("Stripe event %s (%s) for no known tenant", event["id"], event["type"])
        else:
            result = handler(tenant, obj)
        row.processed_at, row.result, row.tenant = timezone.now(), result[:200], tenant
        row.save(update_fields=["processed_at", "result", "tenant"])
        if tenant is not None and handler is not None:
            transaction.on_commit(partial(caps.invalidate, tenant.id))
    if tenant is not None and handler is not None:
        caps.invalidate(
            tenant.id
        )  # committed here (unless called inside an outer transaction: on_commit above)
    return result


def _tenant_for(obj: dict[str, Any]) -> Tenant | None:
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if obj.get("object") == "customer":
        customer = obj.get("id")
    if customer:
        sub = (
            Subscription.objects.unscoped()
            .select_related("tenant")
            .filter(stripe_customer_id=customer)
            .first()
        )
        if sub is not None:
            return sub.tenant
    slug = (obj.get("metadata") or {}).get("tenant") or obj.get("client_reference_id")
    return Tenant.objects.filter(slug=slug).first() if slug else None


def _subscription(tenant: Tenant) -> Subscription:
    return ensure_subscription(tenant, lock=True)


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _workspace_plan_of(obj: dict[str, Any]) -> tuple[Plan | None, int | None]:
    """The workspace plan a subscription's items bill, with its quantity; managed tiers' items are not plans."""
    items = stripe_items(obj)
    for stripe_plan, (_, quantity) in items.items():
        if plan := plan_for_stripe_plan(stripe_plan):
            return plan, quantity
    if not items and (plan := plan_for_stripe_plan((obj.get("plan") or {}).get("id"))):
        return plan, int(obj.get("quantity") or 1)
    hint = (obj.get("metadata") or {}).get("plan")
    return (plan_for_stripe_plan(None, hint), None) if hint else (None, None)


def _mark_past_due(tenant: Tenant, sub: Subscription, why: str) -> None:
    if sub.status != Subscription.Status.PAST_DUE or sub.past_due_since is None:
        sub.status, sub.past_due_since = Subscription.Status.PAST_DUE, timezone.now()
        grace_end = sub.grace_ends_at(settings.BILLING_GRACE_DAYS)
        notification_create(
            tenant=tenant,
            level=Notification.Level.ERROR,
            title="Payment failed",
            body=f"{why} Update your payment method (Billing → Payment) by {grace_end:%Y-%m-%d}; after that, "
            "platform-managed models pause. Your own keys (BYOK) and custom endpoints keep working.",
        )


def _clear_past_due(sub: Subscription) -> None:
    if sub.status == Subscription.Status.PAST_DUE:
        notification_create(
            tenant=sub.tenant,
            level=Notification.Level.INFO,
            title="Payment received",
            body="Thank you: your account is in good standing again.",
        )
    sub.status, sub.past_due_since = Subscription.Status.ACTIVE, None


def on_subscription(tenant: Tenant, obj: dict[str, Any]) -> str:
    sub = _subscription(tenant)
    if (
        sub.stripe_subscription_id
        and sub.stripe_subscription_id != obj.get("id")
        and obj.get("status") not in {"active", "trialing"}
    ):
        return "stale subscription"
    status = obj.get("status") or "active"
    if status in {"canceled", "incomplete_expired"}:
        return on_subscription_deleted(tenant, obj)
    sub.stripe_subscription_id = obj["id"]
    plan, quantity = _workspace_plan_of(obj)
    if plan is not None and status != "incomplete":
        sub.plan = plan
        sub.quantity = quantity or sub.quantity
    items = ((obj.get("items") or {}).get("data")) or [{}]
    sub.current_period_end = _ts(obj.get("current_period_end") or items[0].get("current_period_end"))
    local = local_status(status)
    if local == Subscription.Status.PAST_DUE:
        _mark_past_due(tenant, sub, "Stripe could not collect the subscription payment.")
    elif local in {Subscription.Status.ACTIVE, Subscription.Status.TRIALING}:
        _clear_past_due(sub)
        sub.status = local
    else:
        sub.status = local
    sub.save()
    return f"subscription {status}"


def on_subscription_deleted(tenant: Tenant, obj: dict[str, Any]) -> str:
    sub = _subscription(tenant)
    if sub.stripe_subscription_id and sub.stripe_subscription_id != obj.get("id"):
        return "stale subscription"
    paid_plan = sub.plan.is_paid
    if paid_plan:
        sub.plan = Plan.objects.get(slug=FREE)
    sub.stripe_subscription_id, sub.quantity = "", 1
    sub.status, sub.past_due_since = Subscription.Status.ACTIVE, None
    sub.save()
    # Nothing pays for the managed tiers any more: they end (a new subscription is started by turning one on).
    ended = managed_end_all(tenant=tenant, actor=SYSTEM)
    what = " and ".join(
        part
        for part in (
            "your paid plan ended; the workspace is on Free" if paid_plan else "",
            f"managed LLM is off on {ended} agent{pluralize(ended)}" if ended else "",
        )
        if part
    )
    notification_create(
        tenant=tenant,
        level=Notification.Level.WARNING,
        title="Subscription ended",
        body=f"Your subscription ended: {what or 'nothing is billed any more'}. Your own keys (BYOK) and "
        "custom endpoints keep working.",
    )
    return "subscription deleted"


def on_invoice_failed(tenant: Tenant, obj: dict[str, Any]) -> str:
    sub = _subscription(tenant)
    amount = int(obj.get("amount_due") or 0) / 100
    _mark_past_due(
        tenant,
        sub,
        f"Stripe could not collect ${amount:,.2f} for invoice {obj.get('number') or obj.get('id')}.",
    )
    sub.save()
    return "past due"


def on_invoice_paid(tenant: Tenant, obj: dict[str, Any]) -> str:
    sub = _subscription(tenant)
    _clear_past_due(sub)
    sub.save()
    item_ids = set()
    for line in ((obj.get("lines") or {}).get("data")) or []:
        details = (line.get("parent") or {}).get("invoice_item_details") or {}
        ii = (
            line.get("invoice_item")
            or details.get("invoice_item")
            or (line.get("id") if str(line.get("id", "")).startswith("ii_") else None)
        )
        if ii:
            item_ids.add(ii)
    for entry in (
        LedgerEntry.objects.for_tenant(tenant).select_for_update().filter(stripe_invoice_item_id__in=item_ids)
    ):
        entry.invoiced_cents += entry.pushed_amount_cents
        entry.pushed_amount_cents, entry.stripe_invoice_item_id = 0, ""
        entry.stripe_invoice_id, entry.state = str(obj.get("id") or ""), LedgerEntry.State.INVOICED
        entry.save()
    return "paid"


def on_checkout_completed(tenant: Tenant, obj: dict[str, Any]) -> str:
    if obj.get("mode") != "subscription" or not obj.get("subscription"):
        return "ignored"
    sub = _subscription(tenant)
    subscription = obj["subscription"]
    sub.stripe_subscription_id = subscription["id"] if isinstance(subscription, dict) else str(subscription)
    if obj.get("customer") and not sub.stripe_customer_id:
        sub.stripe_customer_id = str(obj["customer"])
    metadata = obj.get("metadata") or {}
    plan = Plan.objects.filter(slug=metadata.get("plan"), is_active=True).first()
    if plan is not None:
        sub.plan = plan
        sub.quantity = billable_agents(tenant) if plan.per_agent else 1
    _clear_past_due(sub)
    sub.save()
    if metadata.get("managed_tier"):
        _apply_managed_checkout(tenant, metadata)
    return "checkout completed"


def _apply_managed_checkout(tenant: Tenant, metadata: dict[str, Any]) -> None:
    """The managed tier a user paid for in Checkout: on for that agent (or the default agent)."""
    agent_id = str(metadata.get("managed_agent") or "")
    agent = None
    if agent_id:
        agent = Agent.objects.for_tenant(tenant).filter(pk=int(agent_id)).first()
        if agent is None or not agent.is_active:
            log.warning(
                "checkout for tenant %s names agent %s, which is gone; nothing applied", tenant.id, agent_id
            )
            return
    try:
        managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug=str(metadata["managed_tier"]))
    except ValidationError as exc:  # a tier retired since: the reconciliation reports the paid item
        log.warning("checkout for tenant %s not applied: %s", tenant.id, exc.messages)


HANDLERS: dict[str, Callable[[Tenant, dict[str, Any]], str]] = {
    "customer.subscription.created": on_subscription,
    "customer.subscription.updated": on_subscription,
    "customer.subscription.deleted": on_subscription_deleted,
    "invoice.payment_failed": on_invoice_failed,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_succeeded": on_invoice_paid,
    "checkout.session.completed": on_checkout_completed,
}
