"""run_billing_cycle is idempotent; reconciliation finds and repairs each kind of drift."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from billing.managed import managed_set
from billing.models import LedgerEntry, ReconciliationIssue, Subscription
from billing.stripe.ledger import overage_push
from billing.stripe.reconciliation import reconcile
from billing.usage import period_of
from llm.models import UsageDaily
from llm.usage.rollups import rollup_pending
from tenants.audit import SYSTEM
from tenants.services import agent_create

from .conftest import make_usage, remote_items

pytestmark = pytest.mark.django_db


def _items(stripe, tenant):
    customer = Subscription.objects.unscoped().get(tenant=tenant).stripe_customer_id
    items = [i.to_dict() for i in stripe.v1.invoice_items.list(params={"customer": customer}).data]
    return [i for i in items if (i.get("metadata") or {}).get("ledger_key")]


def _cycle(period=None) -> dict:
    out = StringIO()
    call_command("run_billing_cycle", *(["--period", period] if period else []), stdout=out)
    return json.loads(out.getvalue())


def test_run_billing_cycle_pushes_once_and_is_a_no_op_the_second_time(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=6_000_000)  # 1M over x $3
    first = _cycle(period_of())
    assert first["pushes"] == {"created": 1}
    assert first["reconciliation"]["issues_found"] == 0
    entry_before = LedgerEntry.objects.unscoped().get(tenant=paid_tenant)
    second = _cycle(period_of())
    assert second["pushes"] == {"unchanged": 1}
    assert second["reconciliation"]["issues_found"] == 0
    entry_after = LedgerEntry.objects.unscoped().get(tenant=paid_tenant)
    assert entry_after.updated_at == entry_before.updated_at
    assert [i["amount"] for i in _items(stripe, paid_tenant)] == [300]


def test_run_billing_cycle_updates_not_duplicates_when_usage_grows(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=6_000_000)
    _cycle(period_of())
    make_usage(paid_tenant, tokens=2_000_000)
    assert _cycle(period_of())["pushes"] == {"updated": 1}
    assert [int(i["amount"]) for i in _items(stripe, paid_tenant)] == [900]


def test_run_billing_cycle_rejects_a_bad_period(db):
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("run_billing_cycle", "--period", "May", stdout=StringIO())


def test_reconciliation_repairs_a_missing_push(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=6_000_000)
    run = reconcile(period=period_of())
    issue = ReconciliationIssue.objects.get(run=run)
    assert (issue.kind, issue.repaired) == ("missing_push", True)
    assert [i["amount"] for i in _items(stripe, paid_tenant)] == [300]
    assert reconcile(period=period_of()).issues_found == 0


def test_reconciliation_repairs_an_item_deleted_in_stripe(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=6_000_000)
    overage_push(tenant=paid_tenant, period=period_of())
    stripe.v1.invoice_items.delete(LedgerEntry.objects.unscoped().get().stripe_invoice_item_id)
    run = reconcile(period=period_of())
    assert list(run.issues.values_list("kind", "repaired")) == [("missing_push", True)]
    items = _items(stripe, paid_tenant)
    assert [i["amount"] for i in items] == [300]
    assert LedgerEntry.objects.unscoped().get().stripe_invoice_item_id == items[0]["id"]


def test_reconciliation_removes_a_duplicate_item_before_invoicing(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=6_000_000)
    overage_push(tenant=paid_tenant, period=period_of())
    entry = LedgerEntry.objects.unscoped().get()
    sub = Subscription.objects.unscoped().get(tenant=paid_tenant)
    # what a retried create does on a Stripe that ignores idempotency keys
    stripe.v1.invoice_items.create(
        params={
            "customer": sub.stripe_customer_id,
            "amount": 300,
            "currency": "usd",
            "metadata": {"ledger_key": entry.ledger_key, "period": period_of()},
        }
    )
    assert len(_items(stripe, paid_tenant)) == 2
    run = reconcile(period=period_of())
    assert list(run.issues.values_list("kind", "repaired")) == [("duplicate_item", True)]
    items = _items(stripe, paid_tenant)
    assert [i["id"] for i in items] == [entry.stripe_invoice_item_id]


def test_reconciliation_fixes_an_amount_edited_in_stripe(paid_tenant, stripe):
    make_usage(paid_tenant, tokens=6_000_000)
    overage_push(tenant=paid_tenant, period=period_of())
    stripe.v1.invoice_items.update(
        LedgerEntry.objects.unscoped().get().stripe_invoice_item_id, params={"amount": 1}
    )
    run = reconcile(period=period_of())
    assert list(run.issues.values_list("kind", "repaired")) == [("amount_drift", True)]
    assert [int(i["amount"]) for i in _items(stripe, paid_tenant)] == [300]


def test_reconciliation_repairs_subscription_item_drift(paid_tenant, stripe):
    # Agents put on managed tiers while the items sync is lost (its on_commit task never runs here): Stripe still
    # bills one Pro agent.
    bots = [agent_create(tenant=paid_tenant, actor=SYSTEM, slug=f"bot-{c}", name=c) for c in "abc"]
    for bot, tier in zip(bots, ("pro", "pro", "ultra"), strict=True):
        managed_set(tenant=paid_tenant, actor=SYSTEM, agent=bot, tier_slug=tier)
    run = reconcile(period=period_of())
    assert list(run.issues.values_list("kind", "repaired")) == [("quantity_drift", True)]
    assert remote_items(stripe, paid_tenant) == {
        "byok-tier-pro-1000-usd-month": 3,
        "byok-tier-ultra-2000-usd-month": 1,
    }
    assert reconcile(period=period_of()).issues_found == 0


def test_reconciliation_repairs_a_stale_rollup(tenant):
    yesterday = timezone.now() - timedelta(days=1)
    make_usage(tenant, tokens=100, tcu=5, when=yesterday)
    rollup_pending()
    UsageDaily.objects.unscoped().filter(tenant=tenant).update(tcu=0)  # gone stale
    run = reconcile(period=period_of(yesterday))  # yesterday's period: a complete day exists on the 1st too
    assert list(run.issues.values_list("kind", "repaired")) == [("rollup_drift", True)]
    assert UsageDaily.objects.unscoped().get(tenant=tenant).tcu == 5


def test_reconciliation_reports_what_it_cannot_repair(tenant):
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="pro")  # by hand, and Stripe is not set up
    run = reconcile(period=period_of())
    issue = run.issues.get()
    assert (issue.kind, issue.repaired) == ("subscription_missing", False)
    assert "1 x byok-tier-pro-1000-usd-month" in issue.detail


def test_reconciliation_creates_the_subscription_of_a_tier_set_by_hand(tenant, stripe):
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="pro")  # its sync task never ran
    run = reconcile(period=period_of())
    issue = run.issues.get()
    assert (issue.kind, issue.repaired) == ("subscription_missing", True)
    sub = Subscription.objects.unscoped().get(tenant=tenant)
    assert sub.stripe_customer_id
    assert sub.stripe_subscription_id
    assert remote_items(stripe, tenant) == {"byok-tier-pro-1000-usd-month": 1}
    assert stripe.v1.customers.retrieve(sub.stripe_customer_id).metadata["tenant"] == "acme"
    assert reconcile(period=period_of()).issues_found == 0
