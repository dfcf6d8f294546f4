"""The typed request of a tenant page or API call: what tenant resolution (the middleware, or API-key
authentication) sets on Django's request, so views are checked against it instead of `Any`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from tenants.models import ApiKey, Tenant


class TenantRequest(HttpRequest):
    """A request past tenant resolution (a view behind `tenant_required`, or the REST API): `tenant` and `role` are
    set by TenantMiddleware, `api_key` and `key_perms` by ApiKeyAuthentication for `Authorization: Bearer` calls
    (`role` is None then). Other pages see a plain HttpRequest, whose `tenant` may be None."""

    tenant: Tenant
    role: str | None
    api_key: ApiKey | None
    key_perms: frozenset[str] | set[str] | None
