"""Django admin for the catalog (curated by platform admins) and, read-mostly, tenants' LLM configuration.

Every catalog change is recorded in the admin's history (LogEntry) and makes the router's cached catalog
stale at once; secrets are never shown (only their masks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize

from llm.config.versions import bump_config_version
from llm.metering import queue as metering
from llm.models import CatalogModel, CostBaseline, Credential, Preferences, Provider, Route
from tenants.admin_base import TenantOwnedAdmin

log = logging.getLogger(__name__)


_URL_FIELDS: Mapping[type[models.Field], Mapping[str, Any]] = {models.URLField: {"assume_scheme": "https"}}


class CatalogAdminMixin:
    """Invalidate the router's catalog on every change."""

    formfield_overrides = _URL_FIELDS

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        log.info(
            "catalog %s %s by %s: %s",
            "changed" if change else "added",
            obj.pk,
            request.user,
            list(form.changed_data),
        )
        bump_config_version()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)  # type: ignore[misc]
        bump_config_version()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        bump_config_version()


@admin.register(Provider)
class ProviderAdmin(CatalogAdminMixin, admin.ModelAdmin):
    list_display = ["id", "name", "protocol", "default_base_url", "eu_region_available", "sort_order"]
    list_filter = ["protocol", "eu_region_available"]
    search_fields = ["id", "name"]


def _set_enabled(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, enabled: bool
) -> None:
    objects = list(queryset)
    queryset.update(enabled=enabled)
    word = "Enabled" if enabled else "Disabled"
    for obj in objects:
        modeladmin.log_change(request, obj, f"{word} (bulk action).")
    bump_config_version()
    modeladmin.message_user(
        request, f"{word} {len(objects)} model{pluralize(len(objects))}.", messages.SUCCESS
    )


@admin.action(description="Enable the selected models")
def enable_models(modeladmin, request, queryset):
    _set_enabled(modeladmin, request, queryset, True)


@admin.action(description="Disable the selected models")
def disable_models(modeladmin, request, queryset):
    _set_enabled(modeladmin, request, queryset, False)


@admin.register(CatalogModel)
class CatalogModelAdmin(CatalogAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "provider",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cache_read_usd_per_mtok",
        "cache_write_usd_per_mtok",
        "eu_hosted",
        "tier",
        "recommended",
        "enabled",
    ]
    list_filter = [
        "provider",
        "tier",
        "eu_hosted",
        "recommended",
        "enabled",
        "reasoning",
        "vision",
        "tools",
        "coding",
        "embeddings",
    ]
    list_editable = ["enabled"]
    search_fields = ["id", "name", "native_model_id", "openrouter_model_id"]
    list_select_related = ["provider"]
    actions = [enable_models, disable_models]
    fieldsets = [
        (None, {"fields": ["id", "provider", "name", "tier", "enabled", "recommended", "sort_order"]}),
        ("Upstream ids", {"fields": ["native_model_id", "openrouter_model_id"]}),
        (
            "Prices (USD per 1M tokens)",
            {
                "fields": [
                    "input_usd_per_mtok",
                    "output_usd_per_mtok",
                    "cache_read_usd_per_mtok",
                    "cache_write_usd_per_mtok",
                ],
                "description": "Tokens read from or written to the provider's prompt cache are billed at the "
                "cache prices; leave one empty to bill those tokens at the input price.",
            },
        ),
        (
            "Limits and capabilities",
            {
                "fields": [
                    "context_length",
                    "max_output_tokens",
                    "reasoning",
                    "vision",
                    "tools",
                    "coding",
                    "embeddings",
                    "eu_hosted",
                ]
            },
        ),
        (None, {"fields": ["notes"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return ["id"] if obj else []


class TenantConfigAdmin(TenantOwnedAdmin):
    formfield_overrides = _URL_FIELDS

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        bump_config_version(obj.tenant_id)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        bump_config_version(obj.tenant_id)

    def delete_queryset(self, request, queryset):
        tenant_ids = set(queryset.values_list("tenant_id", flat=True))
        super().delete_queryset(request, queryset)
        for tenant_id in tenant_ids:
            bump_config_version(tenant_id)


@admin.register(CostBaseline)
class CostBaselineAdmin(admin.ModelAdmin):
    """One row: the model usage pages compare costs with (the platform default while there is none)."""

    list_display = ["model"]
    autocomplete_fields = ["model"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not CostBaseline.objects.exists()


@admin.register(Credential)
class CredentialAdmin(TenantConfigAdmin):
    list_display = [
        "name",
        "tenant",
        "kind",
        "api_key_masked",
        "base_url",
        "created_at",
        "rotated_at",
        "last_verified_at",
    ]
    list_filter = ["kind"]
    search_fields = ["name", "tenant__slug", "base_url"]
    # Secrets are changed by the tenant (API or pages); admins see the masks only. The base URL is read-only
    # too: the secrets are bound to its origin, and only the tenant can re-enter them
    # (llm.serializers.CredentialWriteSerializer).
    fields = [
        "tenant",
        "kind",
        "name",
        "api_key_masked",
        "base_url",
        "config",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cache_read_usd_per_mtok",
        "cache_write_usd_per_mtok",
        "created_at",
        "rotated_at",
        "last_verified_at",
    ]
    readonly_fields = [
        "tenant",
        "kind",
        "api_key_masked",
        "base_url",
        "created_at",
        "rotated_at",
        "last_verified_at",
    ]

    def has_add_permission(self, request):
        return False


@admin.register(Preferences)
class PreferencesAdmin(TenantConfigAdmin):
    list_display = ["tenant", "agent", "mode", "model", "temperature", "max_tokens", "eu_only", "updated_at"]
    list_filter = ["mode", "eu_only"]
    search_fields = ["tenant__slug", "model"]
    raw_id_fields = ["tenant", "agent", "credential", "custom_endpoint"]


@admin.register(Route)
class RouteAdmin(TenantConfigAdmin):
    list_display = ["name", "tenant", "cache_ttl_seconds", "eu_only", "updated_at"]
    search_fields = ["name", "tenant__slug"]
    raw_id_fields = ["tenant"]


# --- usage dead letters: events the database refused, kept in Redis with the reason -----------------------


def usage_dead_letters_view(request: HttpRequest) -> Any:
    """List dead-lettered usage events; requeue them once the cause is fixed, or discard them."""
    from django.shortcuts import redirect
    from django.template.response import TemplateResponse

    if not request.user.is_superuser:
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied
    if request.method == "POST":
        ids = request.POST.getlist("ids")
        if request.POST.get("action") == "requeue":
            count = metering.requeue_dead_letters(ids or None)
            messages.success(request, f"{count} event{pluralize(count)} put back on the usage queue.")
        elif request.POST.get("action") == "discard" and ids:
            count = metering.discard_dead_letters(ids)
            messages.warning(request, f"{count} event{pluralize(count)} discarded.")
        return redirect("admin:llm_usage_dead_letters")
    context = {
        **admin.site.each_context(request),
        "title": "Usage dead letters",
        "letters": metering.dead_letters(),
        "total": metering.dead_letter_count(),
    }
    return TemplateResponse(request, "admin/llm/usage_dead_letters.html", context)


def _with_dead_letters(get_urls: Any) -> Any:
    def urls() -> list:
        from django.urls import path

        return [
            path(
                "llm/usage-dead-letters/",
                admin.site.admin_view(usage_dead_letters_view),
                name="llm_usage_dead_letters",
            ),
            *get_urls(),
        ]

    return urls


admin.site.get_urls = _with_dead_letters(admin.site.get_urls)  # type: ignore[method-assign]
