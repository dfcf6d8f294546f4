"""Overage to Stripe exactly once: the ledger guards every push (localstripe ignores idempotency keys)."""

from datetime import timedelta

import pytest
import stripe as stripe_sdk

from billing.models import LedgerEntry
from billing.stripe import ledger
from billing.stripe.ledger import overage_push
from billing.usage import period_of

from .conftest import make_usage

pytestmark = pytest.mark.django_db


def _items(stripe, tenant):
    from billing.models import Subscription

    customer = Subscription.objects.unscoped().get(tenant=tenant).stripe_customer_id
    items = [i.to_dict() for i in stripe.v1.invoice_items.list(params={"customer": customer}).data]
    return [i for i in items if (i.get("metadata") or {}).get("ledger_key")]


def test_no_overage_pushes_nothing(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=4_000_000)  # the default agent's Pro tier includes 5M
    assert overage_push(tenant=paid_tenant, period=period_of()).action == "skipped"
    assert _items(stripe, paid_tenant) == []
    assert not LedgerEntry.objects.unscoped().exists()


def test_overage_is_pushed_once_with_the_right_amount(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=7_000_000)  # 2M over x $3 = $6.00
    make_usage(paid_tenant, tokens=9_000_000, mode="byok")  # BYOK tokens never count
    first = overage_push(tenant=paid_tenant, period=period_of())
    second = overage_push(tenant=paid_tenant, period=period_of())
    assert (first.action, second.action) == ("created", "unchanged")
    items = _items(stripe, paid_tenant)
    assert len(items) == 1
    assert items[0]["amount"] == 600
    assert items[0]["currency"] == "usd"
    entry = LedgerEntry.objects.unscoped().get(tenant=paid_tenant)
    assert (entry.state, entry.amount_cents, entry.stripe_invoice_item_id) == ("pushed", 600, items[0]["id"])
    assert items[0]["metadata"]["ledger_key"] == entry.ledger_key


def test_growing_usage_updates_the_one_item(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=7_000_000)
    overage_push(tenant=paid_tenant, period=period_of())
    make_usage(paid_tenant, tokens=1_500_000)  # now 3.5M over → $10.50
    assert overage_push(tenant=paid_tenant, period=period_of()).action == "updated"
    items = _items(stripe, paid_tenant)
    assert len(items) == 1
    assert int(items[0]["amount"]) == 1050


def test_a_timeout_after_stripe_created_the_item_does_not_charge_twice(paid_tenant, stripe, monkeypatch):
    make_usage(paid_tenant, tokens=7_000_000)
    real_create = stripe.v1.invoice_items.create

    def create_then_time_out(*args, **kwargs):
        real_create(*args, **kwargs)  # Stripe did it…
        raise stripe_sdk.APIConnectionError("Request timed out")  # …but the answer was lost

    monkeypatch.setattr(
        type(stripe.v1.invoice_items), "create", lambda self, *a, **k: create_then_time_out(*a, **k)
    )
    failed = overage_push(tenant=paid_tenant, period=period_of())
    assert failed.action == "failed"
    assert "could not be reached" in failed.message
    entry = LedgerEntry.objects.unscoped().get(tenant=paid_tenant)
    assert entry.state == "failed"
    assert entry.stripe_invoice_item_id == ""
    monkeypatch.undo()
    retry = overage_push(tenant=paid_tenant, period=period_of())
    assert retry.action == "adopted"
    items = _items(stripe, paid_tenant)
    assert len(items) == 1
    assert items[0]["amount"] == 600
    assert LedgerEntry.objects.unscoped().get(tenant=paid_tenant).stripe_invoice_item_id == items[0]["id"]


def test_a_stripe_error_leaves_the_ledger_consistent(paid_tenant, stripe, settings):
    make_usage(paid_tenant, tokens=7_000_000)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    from billing.stripe.client import reset_clients

    reset_clients()
    assert overage_push(tenant=paid_tenant, period=period_of()).action == "failed"
    entry = LedgerEntry.objects.unscoped().get(tenant=paid_tenant)
    assert entry.state == "failed"
    assert entry.pushed_amount_cents == 0
    assert entry.last_error


def test_usage_after_the_item_was_invoiced_goes_on_a_new_item(paid_tenant, stripe):
    from billing.models import Subscription

    make_usage(paid_tenant, tokens=7_000_000)
    overage_push(tenant=paid_tenant, period=period_of())
    sub = Subscription.objects.unscoped().get(tenant=paid_tenant)
    stripe.v1.invoices.create(
        params={"customer": sub.stripe_customer_id, "subscription": sub.stripe_subscription_id}
    )
    assert _items(stripe, paid_tenant) == []  # the item is on an invoice now
    make_usage(paid_tenant, tokens=1_000_000)  # +$3.00
    assert overage_push(tenant=paid_tenant, period=period_of()).action == "created"
    items = _items(stripe, paid_tenant)
    assert len(items) == 1
    assert items[0]["amount"] == 300
    entry = LedgerEntry.objects.unscoped().get(tenant=paid_tenant)
    assert (entry.amount_cents, entry.invoiced_cents, entry.pushed_amount_cents) == (900, 600, 300)


def test_each_period_has_its_own_entry(paid_tenant, stripe):
    from django.utils import timezone

    from billing.models import ManagedAgent

    last_month = timezone.now().replace(day=1) - timedelta(days=2)
    # managed since before last month
    ManagedAgent.objects.unscoped().filter(tenant=paid_tenant).update(
        enabled_at=last_month - timedelta(days=40)
    )
    make_usage(paid_tenant, tokens=6_000_000, when=last_month)
    make_usage(paid_tenant, tokens=6_000_000)
    overage_push(tenant=paid_tenant, period=period_of(last_month))
    overage_push(tenant=paid_tenant, period=period_of())
    assert LedgerEntry.objects.unscoped().filter(tenant=paid_tenant).count() == 2
    assert sorted(i["amount"] for i in _items(stripe, paid_tenant)) == [300, 300]


def test_pending_items_only_lists_the_projects_items(paid_tenant, stripe):
    from billing.models import Subscription

    sub = Subscription.objects.unscoped().get(tenant=paid_tenant)
    stripe.v1.invoice_items.create(
        params={"customer": sub.stripe_customer_id, "amount": 100, "currency": "usd"}
    )
    assert ledger.pending_items(sub.stripe_customer_id) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_pushes_make_one_item(make_tenant, stripe):
    import threading

    from django.db import connection

    from .conftest import make_managed_paid

    tenant = make_managed_paid(make_tenant("parallel"), "pro")
    make_usage(tenant, tokens=6_000_000)
    barrier = threading.Barrier(4)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(overage_push(tenant=tenant, period=period_of()).action)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["created", "unchanged", "unchanged", "unchanged"]
    assert [i["amount"] for i in _items(stripe, tenant)] == [300]
