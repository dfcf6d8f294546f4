"""Puts the session user's current tenant on the request and in scope for the request's duration."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .models import Membership
from .scoping import reset_current_tenant, set_current_tenant

SESSION_KEY = "tenant_id"


def resolve_membership(request: HttpRequest) -> Membership | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = (
        Membership.objects.unscoped().select_related("tenant").filter(user=user, tenant__is_active=True)
    )
    wanted = request.session.get(SESSION_KEY)
    membership = None
    if wanted is not None:
        membership = memberships.filter(tenant_id=wanted).first()
    if membership is None:
        membership = memberships.order_by("created_at").first()
        if membership is not None:
            request.session[SESSION_KEY] = membership.tenant_id
    return membership


class CurrentTenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership = resolve_membership(request)
        request.membership = membership  # type: ignore[attr-defined]
        request.tenant = membership.tenant if membership else None  # type: ignore[attr-defined]
        request.role = membership.role if membership else None  # type: ignore[attr-defined]
        token = set_current_tenant(request.tenant)  # type: ignore[attr-defined]
        try:
            return self.get_response(request)
        finally:
            reset_current_tenant(token)
