"""Tenant scoping that fails closed: tenant-owned models cannot be queried without a tenant in scope."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from django.apps import apps
from django.db import models

if TYPE_CHECKING:
    from .models import Tenant

_current_tenant: ContextVar[Tenant | None] = ContextVar("current_tenant", default=None)

_M = TypeVar("_M", bound="TenantOwned")


class TenantScopeError(RuntimeError):
    """Raised when a tenant-owned model is queried with no tenant in scope, or written into another tenant."""


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


class TenantScopedQuerySet(models.QuerySet[_M]):
    """Queryset of a tenant-owned model; from `for_tenant(t)` it reads only t's rows and writes only into t.

    Bound to a tenant, `create()` (and so `get_or_create`, `update_or_create`, their async twins) and
    `bulk_create()` fill the tenant in when it is not given, and refuse rows of another tenant, as `update()`
    refuses to move rows to one. Unbound (`.unscoped()`), it is a plain queryset.
    """

    # The Tenant itself when for_tenant got one: created rows then carry it without another query.
    _bound_tenant: Tenant | None = None
    _bound_tenant_id: int | None = None

    def _clone(self):
        clone = super()._clone()  # type: ignore[misc]
        clone._bound_tenant = self._bound_tenant
        clone._bound_tenant_id = self._bound_tenant_id
        return clone

    def _bind(self, tenant: Tenant | int) -> TenantScopedQuerySet[_M]:
        # Through the registry, not an import: tenants.models imports this module.
        tenant_model: type[Tenant] = apps.get_model("tenants", "Tenant")
        name = self.model.__name__
        if tenant is None:
            raise TenantScopeError(f"{name}.objects.for_tenant(None): a tenant (or its id) is required")
        if isinstance(tenant, tenant_model):
            if tenant.pk is None:
                raise TenantScopeError(f"{name}.objects.for_tenant(): the tenant is not saved")
            tenant_id = tenant.pk
        elif isinstance(tenant, int) and not isinstance(tenant, bool):
            tenant_id = tenant
        else:
            raise TypeError(
                f"{name}.objects.for_tenant() takes a Tenant or its id, not {type(tenant).__name__}"
            )
        bound = self.filter(tenant_id=tenant_id)
        bound._bound_tenant = tenant if isinstance(tenant, tenant_model) else None
        bound._bound_tenant_id = tenant_id
        return bound

    def _refuse_other_tenant(self, values: Mapping[str, Any]) -> None:
        """Raise if `values` name a tenant other than the bound one."""
        for key in ("tenant", "tenant_id"):
            if key not in values:
                continue
            given = values[key]
            given_id = given.pk if key == "tenant" and isinstance(given, models.Model) else given
            if given_id != self._bound_tenant_id:
                raise TenantScopeError(
                    f"{self.model.__name__}: a queryset for tenant {self._bound_tenant_id} "
                    f"cannot write into tenant {given_id}"
                )

    def create(self, **kwargs: Any) -> _M:
        if self._bound_tenant_id is not None:
            self._refuse_other_tenant(kwargs)
            if "tenant" not in kwargs and "tenant_id" not in kwargs:
                if self._bound_tenant is not None:
                    kwargs["tenant"] = self._bound_tenant
                else:
                    kwargs["tenant_id"] = self._bound_tenant_id
        return super().create(**kwargs)

    create.alters_data = True  # type: ignore[attr-defined]

    def bulk_create(
        self,
        objs: Iterable[_M],
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Collection[str] | None = None,
        unique_fields: Collection[str] | None = None,
    ) -> list[_M]:
        # QuerySet.bulk_create builds no row through create(): fill or refuse each one here.
        objs = list(objs)
        if self._bound_tenant_id is not None:
            for obj in objs:
                if obj.tenant_id is None:
                    if self._bound_tenant is not None:
                        obj.tenant = self._bound_tenant
                    else:
                        obj.tenant_id = self._bound_tenant_id
                else:
                    self._refuse_other_tenant({"tenant_id": obj.tenant_id})
        return super().bulk_create(
            objs,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            update_conflicts=update_conflicts,
            update_fields=update_fields,
            unique_fields=unique_fields,
        )

    bulk_create.alters_data = True  # type: ignore[attr-defined]

    def update_or_create(
        self,
        defaults: Mapping[str, Any] | None = None,
        create_defaults: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> tuple[_M, bool]:
        # The create branch goes through create(); the update branch sets `defaults` on the row it found.
        if self._bound_tenant_id is not None and defaults:
            self._refuse_other_tenant(defaults)
        return super().update_or_create(defaults, create_defaults, **kwargs)

    update_or_create.alters_data = True  # type: ignore[attr-defined]

    def update(self, **kwargs: Any) -> int:
        if self._bound_tenant_id is not None:
            self._refuse_other_tenant(kwargs)
        return super().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]


class TenantScopedManager(models.Manager[_M]):
    """Default manager of tenant-owned models; every query names its tenant, or says why it need not.

    - `Model.objects.for_tenant(tenant_or_id)`: what services, selectors, views and the API use. Filters on
      the tenant, fills it in on `create()` / `get_or_create()` / `bulk_create()`, refuses another's.
    - `Model.objects.filter(...)` (the default queryset): filters by the tenant of `tenant_scope()` and
      raises `TenantScopeError` when there is none (model validation and the admin's forms rely on it).
    - `Model.objects.unscoped()`: the explicit escape hatch, only where the work is cross-tenant by nature
      (the usage drain, rollups, reconciliation, webhooks, admin, a task loading its row by id, API-key
      authentication by hash, a user's memberships). Each call is listed with its reason in
      tests/security/test_scoping_exceptions.py, which fails on any call not listed there.
    """

    _queryset_class = TenantScopedQuerySet

    def get_queryset(self) -> TenantScopedQuerySet[_M]:
        tenant = _current_tenant.get()
        if tenant is None:
            raise TenantScopeError(
                f"{self.model.__name__} queried without a tenant in scope; "
                "use .for_tenant(tenant), tenant_scope(tenant), or .unscoped() for platform-wide work"
            )
        return self._every_tenant().filter(tenant=tenant)

    def for_tenant(self, tenant: Tenant | int) -> TenantScopedQuerySet[_M]:
        """The rows of one tenant (a Tenant or its id); creates through it land in that tenant."""
        return self._every_tenant()._bind(tenant)

    def unscoped(self) -> TenantScopedQuerySet[_M]:
        """Every tenant's rows: only where the work is cross-tenant by nature (see the class docstring)."""
        return self._every_tenant()

    def _every_tenant(self) -> TenantScopedQuerySet[_M]:
        return TenantScopedQuerySet(model=self.model, using=self._db, hints=self._hints)  # type: ignore[attr-defined]


class TenantOwned(models.Model):
    """Abstract base for everything a tenant owns."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")

    objects = TenantScopedManager()

    class Meta:
        abstract = True
