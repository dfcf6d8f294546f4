"""In-app notifications: created by billing (alerts, payment problems), listed and marked read by pages/API."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from billing.models import Notification
from tenants.models import Tenant, User

__all__ = [
    "Notification",
    "notification_create",
    "notification_mark_read",
    "notifications_for",
    "unread_count",
]


def notification_create(
    *,
    tenant: Tenant,
    title: str,
    body: str = "",
    level: str = Notification.Level.INFO,
    user: User | None = None,
) -> Notification:
    return Notification.objects.for_tenant(tenant).create(
        user=user, level=level, title=title[:200], body=body
    )


def notifications_for(
    user: User | None, tenant: Tenant, *, unread_only: bool = False, limit: int = 50
) -> QuerySet[Notification]:
    """The tenant-wide notifications plus the user's own, newest first."""
    qs = Notification.objects.for_tenant(tenant).filter(Q(user__isnull=True) | Q(user=user))
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    return qs.order_by("-created_at", "-id")[:limit]


def unread_count(user: User | None, tenant: Tenant) -> int:
    return (
        Notification.objects.for_tenant(tenant)
        .filter(read_at__isnull=True)
        .filter(Q(user__isnull=True) | Q(user=user))
        .count()
    )


def notification_mark_read(*, tenant: Tenant, user: User | None, notification_id: int | str) -> Notification:
    """Mark one notification read; another tenant's (or user's) is answered like a missing one."""
    qs = Notification.objects.for_tenant(tenant)
    qs = qs.filter(Q(user__isnull=True) | Q(user=user)) if user is not None else qs.filter(user__isnull=True)
    try:
        notification = qs.get(pk=int(notification_id))
    except (Notification.DoesNotExist, ValueError, TypeError):
        raise Http404("No such notification.") from None
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification
