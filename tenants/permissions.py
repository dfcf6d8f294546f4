"""API permissions: a tenant in scope, and the role (or key scope) the view's action needs."""

from __future__ import annotations

from rest_framework import permissions
from rest_framework.request import Request

from .roles import Perm, role_has


def request_has(request, perm: str) -> bool:
    django_request = getattr(request, "_request", request)
    key_perms = getattr(django_request, "key_perms", None)
    if getattr(django_request, "api_key", None) is not None and key_perms is not None:
        return perm in key_perms
    return role_has(getattr(django_request, "role", None), perm)


class IsTenantMember(permissions.BasePermission):
    """Authenticated with a tenant in scope; views name the permission each method needs.

    `required_perms = {"GET": Perm.VIEW_CONFIG, "POST": Perm.MANAGE_AGENTS, ...}` on the view.
    """

    message = "You do not have permission to do this in this workspace."

    def has_permission(self, request: Request, view) -> bool:
        if request.user is None or not request.user.is_authenticated:
            return False
        if getattr(request._request, "tenant", None) is None:
            self.message = "You are not a member of any workspace."
            return False
        required = getattr(view, "required_perms", {})
        perm = required.get(request.method, required.get("*", Perm.VIEW_CONFIG))
        return request_has(request, perm)
