"""Tenant scoping that fails closed: tenant-owned models cannot be queried without a tenant in scope."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:
    from .models import Tenant

_current_tenant: ContextVar[Tenant | None] = ContextVar("current_tenant", default=None)


class TenantScopeError(RuntimeError):
    """Raised when a tenant-owned model is queried with no tenant in scope."""


def current_tenant() -> Tenant | None:
    return _current_tenant.get()


def set_current_tenant(tenant: Tenant | None):  # returns a Token for reset
    return _current_tenant.set(tenant)


def reset_current_tenant(token: Any) -> None:
    _current_tenant.reset(token)


@contextmanager
def tenant_scope(tenant: Tenant) -> Iterator[Tenant]:
    """Run a block (a task, a command) with `tenant` in scope."""
    token = _current_tenant.set(tenant)
    try:
        yield tenant
    finally:
        _current_tenant.reset(token)


class TenantScopedQuerySet(models.QuerySet):
    pass


class TenantScopedManager(models.Manager):
    """Default manager of tenant-owned models: filters by the tenant in scope, raises when there is none.

    `.unscoped()` is the explicit, greppable escape hatch for the admin and platform jobs.
    """

    _queryset_class = TenantScopedQuerySet

    def get_queryset(self) -> models.QuerySet:
        tenant = _current_tenant.get()
        if tenant is None:
            raise TenantScopeError(
                f"{self.model.__name__} queried without a tenant in scope; "
                "use tenant_scope(tenant) or .unscoped() for platform-wide work"
            )
        return super().get_queryset().filter(tenant=tenant)

    def unscoped(self) -> models.QuerySet:
        return super().get_queryset()


class TenantOwned(models.Model):
    """Abstract base for everything a tenant owns."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")

    objects = TenantScopedManager()

    class Meta:
        abstract = True
