"""Celery tasks of billing (thin: take ids, call one service)."""

from celery import shared_task


@shared_task(
    name="billing.send_threshold_alert",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def send_threshold_alert(tenant_id: int, period: str, threshold: str, value: int, limit: int) -> bool:
    from billing.alerts import alert_send

    return alert_send(tenant_id=tenant_id, period=period, threshold=threshold, value=value, limit=limit)


@shared_task(bind=True, name="billing.deliver_alert_webhook", acks_late=True, max_retries=8)
def deliver_alert_webhook(self, alert_id: int) -> bool:
    """POST a signed alert to the tenant's URL; retried with exponential backoff, then given up (recorded)."""
    from billing.alerts import (
        WebhookDeliveryError,
        alert_webhook_deliver,
        alert_webhook_give_up,
        backoff_seconds,
    )

    try:
        alert_webhook_deliver(alert_id)
    except WebhookDeliveryError as exc:
        if self.request.retries >= self.max_retries:
            alert_webhook_give_up(alert_id)
            return False
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
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
    from billing.cycle import billing_cycle_run, periods_due

    periods = [period] if period else periods_due()
    return [billing_cycle_run(period=p, reconciliation=False) for p in periods]


@shared_task(
    name="billing.reconcile", acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=3
)
def reconcile(period: str | None = None) -> dict:
    """Beat, nightly: reconcile the current period (and the previous one while it closes)."""
    from billing.cycle import periods_due
    from billing.stripe.reconciliation import reconcile as run

    periods = [period] if period else periods_due()
    return {p: run(period=p).issues_found for p in periods}


@shared_task(
    name="billing.sync_subscription_quantity",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def sync_subscription_quantity(tenant_id: int) -> bool:
    from billing.stripe.sync import subscription_sync_quantity
    from tenants.models import Tenant

    tenant = Tenant.objects.filter(pk=tenant_id).first()
    return bool(tenant and subscription_sync_quantity(tenant=tenant))
