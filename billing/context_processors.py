"""Template context of every page: how many notifications the person has not read yet (the menu's badge)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest

from tenants.models import User

from .notifications import unread_count


def notifications(request: HttpRequest) -> dict[str, Callable[[], int]]:
    tenant = getattr(request, "tenant", None)
    user = getattr(request, "user", None)
    if tenant is None or not isinstance(user, User):
        return {}
    # Counted only when a page shows the badge (the public pages and JSON never do).
    return {"unread_notifications": lambda: unread_count(user, tenant)}
