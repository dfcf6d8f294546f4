"""Celery tasks of billing (thin: take ids, call one service)."""

from celery import shared_task

from billing import alerts, cycle, plans
from billing.stripe import reconciliation
from tenants.models import Tenant


@shared_task(
    name="billing.send_threshold_alert",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def send_threshold_alert(tenant_id: int, period: str, threshold: str, value: int, limit: int) -> bool:
    return alerts.alert_send(
        tenant_id=tenant_id, period=period, threshold=threshold, value=value, limit=limit
    )


@shared_task(bind=True, name="billing.deliver_alert_webhook", acks_late=True, max_retries=8)
def deliver_alert_webhook(self, alert_id: int) -> bool:
    """POST a signed alert to the tenant's URL; retried with exponential backoff, then given up (recorded)."""
    try:
        alerts.alert_webhook_deliver(alert_id)
    except alerts.WebhookDeliveryError as exc:
        if self.request.retries >= self.max_retries:
            alerts.alert_webhook_give_up(alert_id)
            return False
        raise self.retry(exc=exc, countdown=alerts.backoff_seconds(self.request.retries)) from exc
    return True


@shared_task(
    name="billing.run_billing_cycle",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=3,
)
def run_billing_cycle(period: str | None = None) -> list[dict]:
    """Beat, hourly: the current period (and the previous one while it closes); idempotent."""
    periods = [period] if period else cycle.periods_due()
    return [cycle.billing_cycle_run(period=p, reconciliation=False) for p in periods]


@shared_task(
    name="billing.reconcile", acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=3
)
def reconcile(period: str | None = None) -> dict:
    """Beat, nightly: reconcile the current period (and the previous one while it closes)."""
    periods = [period] if period else cycle.periods_due()
    return {p: reconciliation.reconcile(period=p).issues_found for p in periods}


@shared_task(
    name="billing.sync_subscription_quantity",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def sync_subscription_quantity(tenant_id: int) -> str:
    """The Stripe subscription's items follow the tenant's managed tiers (and per-agent plan): name unchanged."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    return plans.subscription_follow(tenant=tenant) if tenant else "no tenant"
