"""Cap and usage alerts: one per tenant, period and threshold — e-mail, in-app notification, signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from functools import partial
from typing import Any
from urllib.parse import urlparse

import orjson
from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction

from billing import caps
from billing.models import AlertSent, Notification, Subscription
from billing.notifications import notification_create
from billing.subscriptions import ensure_subscription, period_bounds
from billing.usage import platform_tcu_used, platform_tokens, tcu_used
from llm.metering.metrics import ALERTS
from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant
from tenants.roles import Role

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-BYOK-Signature"
WEBHOOK_TIMEOUT = 10.0
WEBHOOK_MAX_RETRIES = 8


class WebhookDeliveryError(Exception):
    pass


# --- texts ----------------------------------------------------------------------------------------


def _describe(threshold: str, value: int, limit: int, tenant: Tenant, period: str) -> tuple[str, str, str]:
    """(level, title, body) of an alert."""
    _, end = period_bounds(period)
    resets = f"{end:%Y-%m-%d} 00:00 UTC"
    if threshold == "tcu_warn":
        return (
            Notification.Level.WARNING,
            f"{tenant.name}: your TCU warn level reached",
            f"{value:,} TCU used in {period} (all calls, every mode), past the warn level of {limit:,} TCU "
            f"you set. The period resets on {resets}. Review usage or change your caps under Billing → Caps.",
        )
    if threshold == "tcu_hard":
        return (
            Notification.Level.ERROR,
            f"{tenant.name}: your TCU hard cap reached",
            f"{value:,} TCU used in {period} (all calls, every mode) of the {limit:,} TCU hard cap you set. "
            f"New calls are refused until the period resets on {resets} or the cap is raised under "
            "Billing → Caps.",
        )
    if threshold == "platform_tcu_warn":
        return (
            Notification.Level.WARNING,
            f"{tenant.name}: platform guardrail warn level reached",
            f"{value:,} TCU of platform-managed calls in {period}, past the guardrail's warn level of "
            f"{limit:,} TCU. The period resets on {resets}. Calls with your own keys do not count.",
        )
    if threshold == "platform_tcu_hard":
        return (
            Notification.Level.ERROR,
            f"{tenant.name}: platform guardrail reached",
            f"{value:,} TCU of platform-managed calls in {period} of the {limit:,} TCU guardrail. "
            f"Platform-managed calls are refused until the period resets on {resets}; calls with your own "
            "keys (BYOK) and custom endpoints keep working.",
        )
    pct = threshold.removeprefix("tokens_")
    return (
        Notification.Level.ERROR if pct == "100" else Notification.Level.WARNING,
        f"{tenant.name}: {pct} % of included tokens used",
        f"{value:,} platform tokens used in {period}, past {pct} % of the tokens your plan includes "
        f"({limit:,}). "
        + (
            "Further tokens are billed as overage at your plan's price per 1M tokens."
            if pct == "100"
            else "Beyond the included amount, tokens are billed as overage."
        ),
    )


def recipients(tenant: Tenant) -> list[str]:
    """Owners and billing members of the tenant (active users)."""
    return sorted(
        set(
            Membership.objects.for_tenant(tenant)
            .filter(role__in=[Role.OWNER, Role.BILLING], user__is_active=True)
            .values_list("user__email", flat=True)
        )
    )


# --- sending --------------------------------------------------------------------------------------


def alert_send(*, tenant_id: int, period: str, threshold: str, value: int, limit: int) -> bool:
    """Send the alert unless it was already sent for this tenant, period and threshold; True when sent now.

    The unique (tenant, period, threshold) row decides: concurrent workers race on its INSERT and only the
    winner notifies. The row and the in-app notification commit together; e-mail and webhook follow the commit.
    """
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return False
    level, title, body = _describe(threshold, value, limit, tenant, period)
    with transaction.atomic():
        alert, created = AlertSent.objects.for_tenant(tenant).get_or_create(
            period=period, threshold=threshold, defaults={"value": value, "limit": limit}
        )
        if not created:
            return False
        notification_create(tenant=tenant, title=title, body=body, level=level)
        sub = Subscription.objects.for_tenant(tenant).first()
        if sub is not None and sub.alert_webhook_url:
            alert.webhook_status = "pending"
            alert.save(update_fields=["webhook_status"])
        transaction.on_commit(partial(_after_commit, tenant.id, alert.pk, title, body))
    return True


def _after_commit(tenant_id: int, alert_id: int, title: str, body: str) -> None:
    alert = AlertSent.objects.for_tenant(tenant_id).select_related("tenant").get(pk=alert_id)
    sent = 0
    for email in recipients(alert.tenant):
        try:
            sent += send_mail(
                f"[BYOK] {title}",
                f"{body}\n\n{settings.SITE_URL.rstrip('/')}/billing/",
                None,
                [email],
                fail_silently=False,
            )
        except Exception:  # one bad address must not stop the others
            log.exception("alert e-mail to a recipient of %s failed", alert.tenant.slug)
    AlertSent.objects.for_tenant(tenant_id).filter(pk=alert_id).update(emails_sent=sent)
    ALERTS.labels(alert.threshold).inc()
    log.info("alert %s sent for %s %s (%s e-mails)", alert.threshold, alert.tenant.slug, alert.period, sent)
    if alert.webhook_status == "pending":
        try:
            # By name: billing.tasks sits above this module (BillingConfig.ready registers it in every process).
            current_app.tasks["billing.deliver_alert_webhook"].delay(alert_id)
        except Exception:  # eager mode (no worker) surfaces the retry here; the alert itself is done
            log.warning(
                "alert webhook for %s not delivered now; see the alert's webhook status",
                alert_id,
                exc_info=True,
            )


def alerts_check(*, tenant: Tenant, period: str) -> list[str]:
    """Send every alert whose threshold the period's usage has passed but which is missing (a lost event)."""
    limits = caps.limits_for(tenant.id)
    found = caps.thresholds(limits)
    metrics = {t.metric for t in found}
    totals = caps.Totals(
        tcu=tcu_used(tenant_id=tenant.id, period=period) if "tcu" in metrics else 0,
        platform_tcu=platform_tcu_used(tenant_id=tenant.id, period=period)
        if "platform_tcu" in metrics
        else 0,
        tokens=platform_tokens(tenant_id=tenant.id, period=period) if "tokens" in metrics else 0,
    )
    sent = []
    for t in found:
        value = totals.of(t.metric)
        if value >= t.level and alert_send(
            tenant_id=tenant.id, period=period, threshold=t.name, value=value, limit=t.level
        ):
            sent.append(t.name)
    return sent


# --- the tenant's webhook ----------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`, the header value tenants verify."""
    t = int(timestamp if timestamp is not None else time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300) -> bool:
    """What a receiver does: recompute the HMAC over `{t}.{body}` and compare in constant time."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - t) > tolerance:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff_seconds(retries: int) -> int:
    """Exponential backoff with jitter: ~10 s, 20 s, 40 s … capped at one hour."""
    base = min(3600, 10 * 2**retries)
    return base + secrets.randbelow(max(1, base // 4))


def _webhook_url_check(url: str) -> None:
    """The SSRF guard of llm/ssrf.py on a webhook URL (http(s), and only public addresses unless
    ALLOW_PRIVATE_ENDPOINTS); https only in production. Raises ValidationError({"url": [...]})."""
    from llm.config import ssrf  # lazy: with the HTTP client it guards (the pages and the delivery task)

    if not settings.ALLOW_PRIVATE_ENDPOINTS and urlparse(url).scheme == "http":
        raise ValidationError({"url": ["Use an https URL."]})
    try:
        ssrf.check_url(url, use_cache=False)
    except ssrf.BlockedAddress as exc:
        raise ValidationError({"url": [str(exc)]}) from None


def alert_webhook_payload(alert: AlertSent) -> bytes:
    return orjson.dumps(
        {
            "id": f"alert_{alert.pk}",
            "type": "billing.alert",
            "tenant": alert.tenant.slug,
            "period": alert.period,
            "threshold": alert.threshold,
            "unit": "tokens" if alert.threshold.startswith("tokens_") else "TCU",
            "value": alert.value,
            "limit": alert.limit,
            "created": alert.created_at.isoformat(),
        }
    )


def alert_webhook_deliver(alert_id: int) -> None:
    """POST the alert to the tenant's URL, signed; raises WebhookDeliveryError so the task retries."""
    import httpx  # a worker loads the HTTP client when it first delivers a webhook

    from llm.config import ssrf  # lazy: with httpx

    alert = AlertSent.objects.unscoped().select_related("tenant").get(pk=alert_id)
    sub = Subscription.objects.for_tenant(alert.tenant).first()
    if sub is None or not sub.alert_webhook_url or alert.webhook_status == "delivered":
        return
    body = alert_webhook_payload(alert)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "byok-platform-alerts/1",
        SIGNATURE_HEADER: sign(sub.alert_webhook_secret, body),
        "X-BYOK-Event-Id": f"alert_{alert.pk}",
    }
    AlertSent.objects.for_tenant(alert.tenant_id).filter(pk=alert_id).update(
        webhook_attempts=alert.webhook_attempts + 1
    )
    try:
        _webhook_url_check(sub.alert_webhook_url)
        # The guarded client checks the addresses it dials, too (a name may answer differently by then).
        with ssrf.guarded_client(timeout=WEBHOOK_TIMEOUT) as client:
            response = client.post(sub.alert_webhook_url, content=body, headers=headers)
    except (ValidationError, ssrf.BlockedAddress) as exc:
        reason = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        _failed(alert, f"refused: {reason}")
        raise WebhookDeliveryError(reason) from exc
    except httpx.HTTPError as exc:
        _failed(alert, f"{type(exc).__name__}")
        raise WebhookDeliveryError(str(exc)) from exc
    if not 200 <= response.status_code < 300:
        _failed(alert, f"HTTP {response.status_code}")
        raise WebhookDeliveryError(f"HTTP {response.status_code}")
    AlertSent.objects.for_tenant(alert.tenant_id).filter(pk=alert_id).update(
        webhook_status="delivered", webhook_last_error=""
    )


def _failed(alert: AlertSent, error: str) -> None:
    AlertSent.objects.for_tenant(alert.tenant_id).filter(pk=alert.pk).update(webhook_last_error=error[:300])


def alert_webhook_give_up(alert_id: int) -> None:
    AlertSent.objects.unscoped().filter(pk=alert_id).update(webhook_status="failed")


def alert_webhook_set(*, tenant: Tenant, actor: Actor, url: str) -> dict[str, Any]:
    """Set (or clear with "") the alert webhook URL; a new signing secret is returned once when set."""
    url = (url or "").strip()
    max_length = Subscription._meta.get_field("alert_webhook_url").max_length or 500
    if len(url) > max_length:
        raise ValidationError({"url": [f"Use a URL of at most {max_length} characters."]})
    if url:
        _webhook_url_check(url)
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)
        secret = ""
        if url:
            secret = "whsec_" + secrets.token_urlsafe(24)
        sub.alert_webhook_url, sub.alert_webhook_secret = url, secret
        sub.save(update_fields=["alert_webhook_url", "alert_webhook_secret", "updated_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action="billing.alert_webhook.update",
            obj=sub,
            object_repr=f"alert webhook of {tenant.slug}",
            changes={"url": url, "secret": bool(secret)},
        )
    return {"url": url, "secret": secret}


def alert_webhook_read(*, tenant: Tenant) -> dict[str, Any]:
    sub = Subscription.objects.for_tenant(tenant).first()
    url = sub.alert_webhook_url if sub else ""
    secret = sub.alert_webhook_secret if sub else ""
    return {"url": url, "secret_masked": f"{secret[:6]}…{secret[-4:]}" if secret else ""}


def recent_alerts(*, tenant: Tenant, limit: int = 20) -> list[AlertSent]:
    return list(AlertSent.objects.for_tenant(tenant).order_by("-created_at")[:limit])
