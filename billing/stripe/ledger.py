"""The billing ledger: overage pushed to Stripe exactly once per tenant, period and kind.

The local Stripe fake ignores idempotency keys, and real networks time out after Stripe acted, so keys alone
are not enough. Each push therefore (1) locks the tenant's ledger row, (2) looks in Stripe for an item that
already carries the row's `ledger_key` before creating one, (3) updates that one item when usage grows, and
(4) records the Stripe id and amount before the lock is released. Running it twice, concurrently, or after a
timeout leaves one item with the right amount.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import LedgerEntry, ManagedAgent, Subscription
from billing.stripe.client import BillingError, as_dict, is_missing, stripe_client, stripe_errors
from billing.subscriptions import period_bounds
from billing.usage import Overage, overage_of
from tenants.models import Tenant

log = logging.getLogger(__name__)
CURRENCY = "usd"
DESCRIPTION_MAX = 500


@dataclass(frozen=True, slots=True)
class PushResult:
    tenant_id: int
    period: str
    action: str  # created | updated | adopted | deleted | unchanged | skipped | failed
    amount_cents: int = 0
    message: str = ""


def ledger_key(tenant_id: int, period: str, kind: str = LedgerEntry.Kind.OVERAGE) -> str:
    return f"{tenant_id}:{period}:{kind}"


def pending_items(customer_id: str, key: str | None = None) -> list[dict[str, Any]]:
    """The customer's not-yet-invoiced Stripe invoice items made by this project (or with `key`), oldest first."""
    with stripe_errors("invoice item list"):
        page = stripe_client().v1.invoice_items.list(params={"customer": customer_id, "limit": 100})
        items = [as_dict(i) for i in page.auto_paging_iter()]
    out = [i for i in items if not i.get("invoice") and (i.get("metadata") or {}).get("ledger_key")]
    if key is not None:
        out = [i for i in out if i["metadata"]["ledger_key"] == key]
    out.sort(key=lambda i: (int(i.get("date") or i.get("created") or 0), i["id"]))
    return out


def _retrieve_item(item_id: str) -> dict[str, Any] | None:
    try:
        with stripe_errors("invoice item retrieve"):
            return as_dict(stripe_client().v1.invoice_items.retrieve(item_id))
    except BillingError as exc:
        if is_missing(exc):
            return None
        raise


def delete_item(item_id: str) -> None:
    try:
        with stripe_errors("invoice item delete"):
            stripe_client().v1.invoice_items.delete(item_id)
    except BillingError as exc:
        if not is_missing(exc):
            raise


def _mtok(tokens: int) -> str:
    """Tokens as the description shows them: 1.2M, 5M, 750k, 900."""
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.2f}".rstrip("0").rstrip(".") + "M"
    if tokens >= 1_000:
        return f"{tokens / 1_000:.1f}".rstrip("0").rstrip(".") + "k"
    return str(tokens)


def _description(ov: Overage, tenant: Tenant, after_invoice: bool) -> str:
    """The invoice item's text, itemised per managed agent: "support-bot (Pro): 1.2M over 5M included, $3.60"."""
    parts = [
        f"{a.label} ({a.tier_name}): {_mtok(a.overage_tokens)} over {_mtok(a.included_tokens)} included, "
        f"${a.amount_usd:.2f}"
        for a in ov.agents
        if a.overage_tokens
    ]
    text = f"Managed LLM overage {ov.period} ({tenant.slug}): " + "; ".join(parts or ["none"])
    if after_invoice:
        text += " — remainder after the last invoice"
    if len(text) > DESCRIPTION_MAX:  # many agents: the ledger entry and the usage page keep the detail
        text = text[: DESCRIPTION_MAX - 1] + "…"
    return text


def _sync(entry: LedgerEntry, sub: Subscription, ov: Overage, tenant: Tenant) -> str:
    """Make Stripe hold exactly one pending item of `amount - invoiced` for the entry; returns the action."""
    client = stripe_client()
    item: dict[str, Any] | None = None
    adopted = False
    if entry.stripe_invoice_item_id:
        item = _retrieve_item(entry.stripe_invoice_item_id)
        if item is not None and item.get("invoice"):
            # Already on an invoice: it cannot change any more; growth goes on a new item.
            entry.invoiced_cents += int(item.get("amount") or 0)
            entry.stripe_invoice_id = str(item["invoice"])
            item = None
        if item is None:
            entry.stripe_invoice_item_id, entry.pushed_amount_cents = "", 0
    if item is None:
        found = pending_items(sub.stripe_customer_id, entry.ledger_key)
        if found:
            item, adopted = (
                found[0],
                True,
            )  # an earlier push whose answer was lost; duplicates: reconciliation
            entry.stripe_invoice_item_id = item["id"]
    remaining = entry.amount_cents - entry.invoiced_cents
    if remaining < 0:
        log.warning(
            "ledger %s: %s cents invoiced, more than the %s due; not crediting automatically",
            entry.ledger_key,
            entry.invoiced_cents,
            entry.amount_cents,
        )
        remaining = 0
    metadata = {
        "ledger_key": entry.ledger_key,
        "tenant": tenant.slug,
        "period": entry.period,
        "kind": entry.kind,
        "tokens": str(ov.overage_tokens),
    }
    description = _description(ov, tenant, entry.invoiced_cents > 0)
    action = "unchanged"
    if item is not None:
        if remaining == 0:
            delete_item(item["id"])
            entry.stripe_invoice_item_id, action = "", "deleted"
        elif int(item.get("amount") or 0) != remaining:
            with stripe_errors("invoice item update"):
                client.v1.invoice_items.update(
                    item["id"],
                    params={
                        "amount": remaining,
                        "description": description,
                        "metadata": metadata,
                    },
                    options={"idempotency_key": f"byok-ledger-{entry.pk}-{item['id']}-{remaining}"},
                )
            action = "updated"
        elif adopted:
            action = "adopted"
    elif remaining > 0:
        params: Any = {
            "customer": sub.stripe_customer_id,
            "amount": remaining,
            "currency": entry.currency,
            "description": description,
            "metadata": metadata,
        }
        if sub.stripe_subscription_id:
            params["subscription"] = sub.stripe_subscription_id  # onto the subscription's next invoice
        with stripe_errors("invoice item create"):
            created = client.v1.invoice_items.create(
                params=params,
                options={"idempotency_key": f"byok-ledger-{entry.pk}-{entry.invoiced_cents}-{remaining}"},
            )
        entry.stripe_invoice_item_id, action = created.id, "created"
    entry.pushed_amount_cents = remaining if entry.stripe_invoice_item_id else 0
    return action


def overage_push(*, tenant: Tenant, period: str) -> PushResult:
    """Push the period's overage so far to Stripe (one invoice item, updated as usage grows); idempotent."""
    sub = Subscription.objects.for_tenant(tenant).select_related("plan").first()
    if sub is None:
        return PushResult(tenant.id, period, "skipped", message="no subscription")
    ov = overage_of(tenant_id=tenant.id, period=period)
    target = ov.amount_cents
    kind = LedgerEntry.Kind.OVERAGE
    entry = LedgerEntry.objects.for_tenant(tenant).filter(period=period, kind=kind).first()
    if entry is None and target <= 0:
        return PushResult(tenant.id, period, "skipped", message="no overage")
    if entry is not None and _settled(entry, target):
        return PushResult(tenant.id, period, "unchanged", target)
    if entry is None:
        entry, _ = LedgerEntry.objects.for_tenant(tenant).get_or_create(
            period=period,
            kind=kind,
            defaults={"amount_cents": target, "tokens": ov.overage_tokens},
        )
    with transaction.atomic():
        entry = LedgerEntry.objects.for_tenant(tenant).select_for_update().get(pk=entry.pk)
        if _settled(entry, target):  # another worker pushed while we waited for the lock
            return PushResult(tenant.id, period, "unchanged", target)
        entry.amount_cents, entry.tokens = target, ov.overage_tokens
        if not sub.stripe_customer_id:
            entry.state, entry.last_error = (
                LedgerEntry.State.PENDING,
                "The tenant has no Stripe customer yet.",
            )
            entry.save()
            return PushResult(tenant.id, period, "skipped", target, entry.last_error)
        entry.stripe_customer_id = sub.stripe_customer_id
        entry.attempts += 1
        try:
            action = _sync(entry, sub, ov, tenant)
        except BillingError as exc:
            # Unknown outcome (timeout) or refusal: stay pending; the next push looks in Stripe before creating.
            entry.state, entry.last_error = LedgerEntry.State.FAILED, exc.message[:500]
            entry.save()
            log.warning("overage push failed for %s %s: %s", tenant.slug, period, exc.code)
            return PushResult(tenant.id, period, "failed", target, exc.message)
        entry.state = (
            LedgerEntry.State.INVOICED
            if entry.invoiced_cents and not entry.stripe_invoice_item_id
            else LedgerEntry.State.PUSHED
        )
        entry.last_error, entry.pushed_at = "", timezone.now()
        entry.save()
    log.info("overage push %s %s: %s (%s cents)", tenant.slug, period, action, target)
    return PushResult(tenant.id, period, action, target)


def _settled(entry: LedgerEntry, target: int) -> bool:
    return (
        entry.state in (LedgerEntry.State.PUSHED, LedgerEntry.State.INVOICED)
        and entry.amount_cents == target
        and entry.pushed_amount_cents + entry.invoiced_cents == target
    )


def tenants_to_push(period: str) -> list[Tenant]:
    """Tenants with agents managed during the period (they may owe overage), plus any with a ledger entry."""
    start, end = period_bounds(period)
    managed = ManagedAgent.objects.unscoped().filter(enabled_at__lt=end)
    managed = managed.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start))
    ids = set(managed.values_list("tenant_id", flat=True).distinct())
    ids |= set(LedgerEntry.objects.unscoped().filter(period=period).values_list("tenant_id", flat=True))
    return list(Tenant.objects.filter(id__in=ids).order_by("id"))
