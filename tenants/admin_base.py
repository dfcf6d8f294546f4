"""Admin base for tenant-owned models: platform admins see every tenant, explicitly unscoped."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Tenant
from .scoping import tenant_scope


class TenantOwnedAdmin(admin.ModelAdmin):
    list_select_related = ["tenant"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = self.model.objects.unscoped()  # type: ignore[attr-defined]
        ordering = self.get_ordering(request)
        return qs.order_by(*ordering) if ordering else qs

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Model validation (unique checks) queries the default manager, which needs a tenant in scope.
        tenant = None
        if object_id:
            obj = self.get_queryset(request).filter(pk=object_id).select_related("tenant").first()
            tenant = obj.tenant if obj else None
        elif request.method == "POST" and request.POST.get("tenant"):
            tenant = Tenant.objects.filter(pk=request.POST["tenant"]).first()
        if tenant is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        with tenant_scope(tenant):
            return super().changeform_view(request, object_id, form_url, extra_context)
