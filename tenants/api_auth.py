"""REST API authentication: a tenant key with the `manage` scope, or the browser session (with CSRF)."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.http import TenantRequest

from .keys import key_info, touch_last_used
from .models import ApiKey, Tenant
from .roles import MANAGE_KEY_PERMS
from .scoping import set_current_tenant


class KeyPrincipal(AnonymousUser):
    """Stands in for a user when a request is made with an API key."""

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    @property
    def is_anonymous(self) -> bool:  # type: ignore[override]
        return False

    def __str__(self) -> str:
        return f"key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith(self.keyword + " "):
            return None
        raw = header[len(self.keyword) + 1 :].strip()
        info = key_info(raw)
        if info is None or not info.is_valid():
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        if "manage" not in info.scopes:
            raise exceptions.PermissionDenied("This API key lacks the `manage` scope needed for /api/.")
        api_key = ApiKey.objects.for_tenant(info.tenant_id).select_related("tenant", "agent").get(id=info.id)
        tenant: Tenant = api_key.tenant
        touch_last_used(info.id)
        django_request = cast(TenantRequest, request._request)
        django_request.tenant = tenant
        django_request.role = None
        django_request.api_key = api_key
        django_request.key_perms = MANAGE_KEY_PERMS
        set_current_tenant(tenant)
        return KeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class TenantSessionAuthentication(authentication.SessionAuthentication):
    """Session auth (CSRF enforced); the tenant comes from CurrentTenantMiddleware."""

    def authenticate(self, request: Request):
        result = super().authenticate(request)
        if result is not None:
            cast(TenantRequest, request._request).api_key = None
        return result
