"""Celery tasks of billing (thin: take ids, call one service)."""

from celery import shared_task


@shared_task(name="billing.send_threshold_alert", acks_late=True, autoretry_for=(Exception,), retry_backoff=True,
             max_retries=5)
def send_threshold_alert(tenant_id: int, period: str, threshold: str, value: int, limit: int) -> bool:
    from .alerts import alert_send

    return alert_send(tenant_id=tenant_id, period=period, threshold=threshold, value=value, limit=limit)


@shared_task(bind=True, name="billing.deliver_alert_webhook", acks_late=True, max_retries=8)
def deliver_alert_webhook(self, alert_id: int) -> bool:
    """POST a signed alert to the tenant's URL; retried with exponential backoff, then given up (recorded)."""
    from .alerts import WebhookDeliveryError, alert_webhook_deliver, alert_webhook_give_up, backoff_seconds

    try:
        alert_webhook_deliver(alert_id)
    except WebhookDeliveryError as exc:
        if self.request.retries >= self.max_retries:
            alert_webhook_give_up(alert_id)
            return False
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
    return True
