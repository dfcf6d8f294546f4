"""Reconciliation: compare usage rollups, the ledger and Stripe (invoice items, subscriptions); repair what is
safe (missing push, duplicate pending item, amount drift, quantity drift, mirrored status), report the rest."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing import caps
from billing.models import LedgerEntry, ReconciliationIssue, ReconciliationRun, Subscription
from billing.stripe.client import BillingError, stripe_configured
from billing.stripe.ledger import delete_item, overage_push, pending_items
from billing.stripe.sync import (
    stripe_items,
    subscription_retrieve,
    subscription_sync_items,
    wanted_items_offline,
)
from billing.subscriptions import local_status, period_bounds, period_of
from billing.usage import overage_of
from llm.models import UsageDaily, UsageEvent, UsageWatermark
from llm.usage.rollups import rollup_day
from tenants.models import Tenant

log = logging.getLogger(__name__)
Kind = ReconciliationIssue.Kind


@dataclass(slots=True)
class Finding:
    tenant: Tenant | None
    kind: str
    detail: str
    repaired: bool = False


def reconcile(*, period: str | None = None, repair: bool = True) -> ReconciliationRun:
    """One reconciliation run for a period; every finding is stored (admin) and logged."""
    period = period or period_of()
    period_bounds(period)
    run = ReconciliationRun.objects.create(period=period)
    findings: list[Finding] = list(check_rollups(period, repair=repair))
    subs = list(Subscription.objects.unscoped().select_related("tenant", "plan").order_by("tenant_id"))
    for sub in subs:
        if not sub.stripe_subscription_id and wanted_items_offline(sub.tenant):
            findings.append(_create_missing(sub, repair=repair))
        if not (sub.stripe_customer_id and stripe_configured()):
            continue
        try:
            findings += reconcile_ledger(sub, period, repair=repair)
            findings += reconcile_subscription(sub, repair=repair)
        except BillingError as exc:
            findings.append(Finding(sub.tenant, Kind.STRIPE_ERROR, f"{sub.tenant.slug}: {exc.message}"))
    for f in findings:
        ReconciliationIssue.objects.create(
            run=run, tenant=f.tenant, period=period, kind=f.kind, detail=f.detail, repaired=f.repaired
        )
        (log.info if f.repaired else log.warning)(
            "reconciliation %s %s: %s (%s)",
            period,
            f.kind,
            f.detail,
            "repaired" if f.repaired else "needs a human",
        )
    run.tenants_checked = len(subs)
    run.issues_found = len(findings)
    run.issues_repaired = sum(f.repaired for f in findings)
    run.finished_at = timezone.now()
    run.save()
    return run


# --- usage rollups ---------------------------------------------------------------------------------


def check_rollups(period: str, *, repair: bool) -> list[Finding]:
    """Complete days of the period whose UsageDaily sums differ from the UsageEvents they hold: the events up to
    each tenant's rollup watermark, on the days wholly before it (the rest is read live, so it cannot drift)."""
    start, end = period_bounds(period)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = min(end, today)
    if end <= start:
        return []
    reach: dict[tuple[int, date], list[int]] = defaultdict(list)
    for mark in UsageWatermark.objects.unscoped():
        reach[(mark.event_id, mark.through.astimezone(UTC).date())].append(mark.tenant_id)
    held_events, held_days = Q(pk__in=[]), Q(pk__in=[])
    for (event_id, days_end), tenant_ids in reach.items():
        days_end_at = datetime.combine(days_end, datetime.min.time(), tzinfo=UTC)
        held_events |= Q(tenant_id__in=tenant_ids, id__lte=event_id, created_at__lt=days_end_at)
        held_days |= Q(tenant_id__in=tenant_ids, day__lt=days_end)
    events = (
        UsageEvent.objects.unscoped()
        .filter(held_events, created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("tenant_id", "day")
        .annotate(requests=Count("id"), tokens=Sum("input_tokens"), out=Sum("output_tokens"), tcu=Sum("tcu"))
    )
    rollups = (
        UsageDaily.objects.unscoped()
        .filter(held_days, day__gte=start.date(), day__lt=end.date())
        .values("tenant_id", "day")
        .annotate(
            requests=Sum("requests"), tokens=Sum("input_tokens"), out=Sum("output_tokens"), tcu=Sum("tcu")
        )
    )
    have: dict[tuple[int, date], tuple[int, ...]] = defaultdict(lambda: (0, 0, 0, 0))
    want: dict[tuple[int, date], tuple[int, ...]] = defaultdict(lambda: (0, 0, 0, 0))
    for row in events:
        want[(row["tenant_id"], row["day"])] = tuple(
            int(row[k] or 0) for k in ("requests", "tokens", "out", "tcu")
        )
    for row in rollups:
        have[(row["tenant_id"], row["day"])] = tuple(
            int(row[k] or 0) for k in ("requests", "tokens", "out", "tcu")
        )
    findings = []
    tenants = {t.id: t for t in Tenant.objects.filter(id__in={k[0] for k in set(want) | set(have)})}
    for key in sorted(set(want) | set(have)):
        if want[key] == have[key]:
            continue
        tenant_id, day = key
        if repair:
            rollup_day(tenant_id=tenant_id, day=day)
        findings.append(
            Finding(
                tenants.get(tenant_id),
                Kind.ROLLUP_DRIFT,
                f"{day}: rollup (requests, input, output, TCU) {have[key]} ≠ events {want[key]}",
                repaired=repair,
            )
        )
    return findings


# --- ledger vs Stripe invoice items -------------------------------------------------------------------


def reconcile_ledger(sub: Subscription, period: str, *, repair: bool) -> list[Finding]:
    tenant = sub.tenant
    findings: list[Finding] = []
    key = f"{tenant.id}:{period}:{LedgerEntry.Kind.OVERAGE}"
    items = [
        i for i in pending_items(sub.stripe_customer_id) if (i.get("metadata") or {}).get("period") == period
    ]
    ours = [i for i in items if i["metadata"]["ledger_key"] == key]
    entry = (
        LedgerEntry.objects.for_tenant(tenant).filter(period=period, kind=LedgerEntry.Kind.OVERAGE).first()
    )
    expected = overage_of(tenant_id=tenant.id, period=period).amount_cents

    if len(ours) > 1:
        keep: dict[str, Any] = next(
            (i for i in ours if entry and i["id"] == entry.stripe_invoice_item_id), ours[0]
        )
        extra = [i for i in ours if i["id"] != keep["id"]]
        if repair:
            for duplicate in extra:
                delete_item(duplicate["id"])
        findings.append(
            Finding(
                tenant,
                Kind.DUPLICATE_ITEM,
                f"{tenant.slug} {period}: {len(ours)} pending overage items; kept {keep['id']}, "
                f"{'deleted' if repair else 'would delete'} {', '.join(i['id'] for i in extra)}",
                repaired=repair,
            )
        )
        ours = [keep]

    item: dict[str, Any] | None = ours[0] if ours else None
    if entry is None:
        if item is not None:
            findings.append(
                _push(
                    tenant,
                    period,
                    Kind.ORPHAN_ITEM,
                    repair and expected > 0,
                    f"{tenant.slug} {period}: Stripe item {item['id']} has no ledger entry",
                )
            )
        elif expected > 0:
            findings.append(
                _push(
                    tenant,
                    period,
                    Kind.MISSING_PUSH,
                    repair,
                    f"{tenant.slug} {period}: overage of {expected} cents never pushed",
                )
            )
        return findings

    outstanding = expected - entry.invoiced_cents
    if item is None and outstanding > 0:
        findings.append(
            _push(
                tenant,
                period,
                Kind.MISSING_PUSH,
                repair,
                f"{tenant.slug} {period}: {outstanding} cents due but no pending Stripe item "
                f"(ledger says {entry.state}, item {entry.stripe_invoice_item_id or 'none'})",
                force=True,
            )
        )
    elif item is not None and (int(item.get("amount") or 0) != outstanding or entry.amount_cents != expected):
        findings.append(
            _push(
                tenant,
                period,
                Kind.AMOUNT_DRIFT,
                repair,
                f"{tenant.slug} {period}: Stripe item {item['id']} holds {item.get('amount')} "
                f"cents, {outstanding} due",
                force=True,
            )
        )
    return findings


def _push(tenant: Tenant, period: str, kind: str, repair: bool, detail: str, force: bool = False) -> Finding:
    if not repair:
        return Finding(tenant, kind, detail)
    if force:
        LedgerEntry.objects.for_tenant(tenant).filter(period=period).update(state=LedgerEntry.State.PENDING)
    result = overage_push(tenant=tenant, period=period)
    ok = result.action not in {"failed", "skipped"}
    return Finding(tenant, kind, f"{detail}; push: {result.action} {result.message}".strip(), repaired=ok)


# --- subscriptions ---------------------------------------------------------------------------------


def reconcile_subscription(sub: Subscription, *, repair: bool) -> list[Finding]:
    if not sub.stripe_subscription_id:
        return []
    tenant = sub.tenant
    stripe_sub = subscription_retrieve(sub)
    if stripe_sub is None or stripe_sub.get("status") in {"canceled", "incomplete_expired"}:
        return [
            Finding(
                tenant,
                Kind.STATUS_DRIFT,
                f"{tenant.slug}: on {sub.plan.slug} locally but the Stripe subscription "
                f"{sub.stripe_subscription_id} is gone or canceled; a human decides (downgrade?)",
            )
        ]
    findings = []
    remote = local_status(str(stripe_sub.get("status") or "active"))
    if remote != sub.status:
        if repair:
            _mirror_status(sub, remote)
        findings.append(
            Finding(
                tenant,
                Kind.STATUS_DRIFT,
                f"{tenant.slug}: status {sub.status} locally, {remote} in Stripe",
                repaired=repair,
            )
        )
    wanted = wanted_items_offline(tenant)
    actual = {plan_id: quantity for plan_id, (_, quantity) in stripe_items(stripe_sub).items()}
    if wanted != actual:
        detail = f"{tenant.slug}: Stripe bills {_items_text(actual)}, the workspace has {_items_text(wanted)}"
        if not wanted:
            findings.append(
                Finding(tenant, Kind.QUANTITY_DRIFT, f"{detail}; a human decides (cancel the subscription?)")
            )
        else:
            if repair:
                subscription_sync_items(tenant)
            findings.append(Finding(tenant, Kind.QUANTITY_DRIFT, detail, repaired=repair))
    return findings


def _items_text(items: dict[str, int]) -> str:
    return ", ".join(f"{q} x {p}" for p, q in sorted(items.items())) or "nothing"


def _create_missing(sub: Subscription, *, repair: bool) -> Finding:
    """Something billable (a managed tier an operator set, a paid plan assigned by hand) without a Stripe
    subscription: nothing is being charged. Repaired by creating it (and the customer) when Stripe is set up."""
    tenant = sub.tenant
    detail = (
        f"{tenant.slug} has {_items_text(wanted_items_offline(tenant))} to bill without a Stripe subscription "
        "(assigned by hand?)"
    )
    if not (repair and stripe_configured()):
        return Finding(tenant, Kind.SUBSCRIPTION_MISSING, detail + "; nothing is being charged.")
    try:
        action = subscription_sync_items(tenant)
    except BillingError as exc:
        return Finding(tenant, Kind.SUBSCRIPTION_MISSING, f"{detail}; creating it failed: {exc.message}")
    sub.refresh_from_db()
    return Finding(tenant, Kind.SUBSCRIPTION_MISSING, f"{detail}; subscription {action}", repaired=True)


def _mirror_status(sub: Subscription, remote: str) -> None:
    fields: dict[str, Any] = {"status": remote}
    if remote == Subscription.Status.PAST_DUE and sub.past_due_since is None:
        fields["past_due_since"] = timezone.now()
    elif remote != Subscription.Status.PAST_DUE:
        fields["past_due_since"] = None
    Subscription.objects.for_tenant(sub.tenant_id).filter(pk=sub.pk).update(**fields)
    caps.invalidate(sub.tenant_id)


def previous_period(period: str) -> str:
    start, _ = period_bounds(period)
    return period_of(start - timedelta(days=1))
