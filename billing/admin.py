"""Billing admin: plans (admins manage them), subscriptions, budgets, alerts, the ledger and reconciliation."""

from __future__ import annotations

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize
from django.utils import timezone

from billing import caps
from billing.managed import managed_get, managed_set, schedule_items_sync, tier_models_validate
from billing.models import (
    AgentBudget,
    AlertSent,
    LedgerEntry,
    ManagedAgent,
    ManagedTier,
    Notification,
    Plan,
    ReconciliationIssue,
    ReconciliationRun,
    StripeEvent,
    Subscription,
)
from tenants.admin_base import TenantOwnedAdmin
from tenants.audit import Actor
from tenants.models import Agent


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "tier",
        "price_per_agent_usd",
        "price_flat_usd",
        "platform_allowed",
        "included_tokens",
        "overage_usd_per_mtok",
        "rpm_tenant",
        "is_public",
        "is_active",
    ]
    list_editable = ["is_public", "is_active"]
    readonly_fields = ["stripe_plan_id"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "is_public", "is_active", "sort_order"]}),
        ("Price", {"fields": ["price_per_agent_usd", "price_flat_usd", "markup", "stripe_plan_id"]}),
        (
            "Managed tier",
            {
                "fields": [
                    "platform_allowed",
                    "tier",
                    "tier_models",
                    "included_tokens",
                    "overage_usd_per_mtok",
                ]
            },
        ),
        (
            "Limits",
            {
                "fields": [
                    "rpm_tenant",
                    "rpm_key",
                    "max_concurrency",
                    "monthly_request_cap",
                    "warn_tcu",
                    "hard_tcu",
                ]
            },
        ),
    ]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        caps.invalidate_all(list(obj.subscriptions.values_list("tenant_id", flat=True)))


class ManagedTierForm(forms.ModelForm):
    class Meta:
        model = ManagedTier
        fields = [
            "slug",
            "name",
            "internal_name",
            "description",
            "popular",
            "sort_order",
            "is_active",
            "price_usd",
            "included_tokens",
            "overage_usd_per_mtok",
            "models",
        ]

    def clean_models(self):
        return tier_models_validate(self.cleaned_data.get("models"))


@admin.register(ManagedTier)
class ManagedTierAdmin(admin.ModelAdmin):
    """Platform admins edit the tiers: what customers see, the price, the allowance and the backend models."""

    form = ManagedTierForm
    list_display = [
        "slug",
        "name",
        "internal_name",
        "price_usd",
        "included_tokens",
        "overage_usd_per_mtok",
        "models",
        "popular",
        "is_active",
    ]
    readonly_fields = ["stripe_plan_id"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "slug",
                    "name",
                    "internal_name",
                    "description",
                    "popular",
                    "sort_order",
                    "is_active",
                ]
            },
        ),
        ("Price", {"fields": ["price_usd", "included_tokens", "overage_usd_per_mtok", "stripe_plan_id"]}),
        ("Backend models", {"fields": ["models"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        # The slug is how agents, Stripe Plans and createtenant name a tier: fixed once it exists.
        return [*self.readonly_fields, "slug"] if obj is not None else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return obj is None or not self._tenant_ids(obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        caps.invalidate_all(self._tenant_ids(obj))

    @staticmethod
    def _tenant_ids(tier: ManagedTier) -> list[int]:
        rows = ManagedAgent.objects.unscoped().filter(tier=tier)
        return list(rows.values_list("tenant_id", flat=True).distinct())


class AgentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.tenant.slug} / {obj.slug}"


class ManagedAgentForm(forms.ModelForm):
    # No Meta: the admin builds the fields per request (a tenant-owned FK may only be queried then).

    def clean(self):
        data = super().clean() or {}
        tenant, agent = data.get("tenant"), data.get("agent")
        if tenant is not None and agent is not None and agent.tenant_id != tenant.id:
            raise ValidationError({"agent": "This agent belongs to another tenant."})
        return data


@admin.register(ManagedAgent)
class ManagedAgentAdmin(TenantOwnedAdmin):
    """Operators put an agent (empty = the workspace's default agent) on a tier; the tenant is billed like any
    other (the Stripe customer and subscription are created by the items sync)."""

    form = ManagedAgentForm
    list_display = ["tenant", "agent", "tier", "enabled_at", "ended_at"]
    list_filter = ["tier", ("ended_at", admin.EmptyFieldListFilter)]
    search_fields = ["tenant__slug", "agent__slug"]
    raw_id_fields = ["tenant"]

    def get_readonly_fields(self, request, obj=None):
        return (
            ["tenant", "agent", "enabled_at", "ended_at"] if obj is not None else ["enabled_at", "ended_at"]
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name != "agent":
            return super().formfield_for_foreignkey(db_field, request, **kwargs)
        # Every tenant's agents, named with their tenant (the page renders outside any tenant's scope); the form
        # refuses one of another tenant than the row's.
        kwargs["queryset"] = (
            Agent.objects.unscoped().select_related("tenant").order_by("tenant__slug", "slug")
        )
        kwargs["form_class"] = AgentChoiceField
        kwargs["help_text"] = "Empty: the workspace's default agent (calls made without an agent)."
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor.from_request(request)

    def save_model(self, request, obj, form, change):
        # Through the service: audited, caches dropped, Stripe follows.
        row = managed_set(
            tenant=obj.tenant, actor=self._actor(request), agent=obj.agent, tier_slug=obj.tier.slug
        )
        if row is not None:
            obj.pk, obj.enabled_at = row.pk, row.enabled_at

    def delete_model(self, request, obj):
        managed_set(tenant=obj.tenant, actor=self._actor(request), agent=obj.agent, tier_slug=None)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("tenant", "agent"):
            if managed_get(tenant=obj.tenant, agent=obj.agent) is not None:
                managed_set(tenant=obj.tenant, actor=self._actor(request), agent=obj.agent, tier_slug=None)


@admin.register(Subscription)
class SubscriptionAdmin(TenantOwnedAdmin):
    list_display = [
        "tenant",
        "plan",
        "status",
        "past_due_since",
        "quantity",
        "stripe_customer_id",
        "stripe_subscription_id",
        "warn_tcu_override",
        "hard_tcu_override",
    ]
    list_filter = ["plan", "status"]
    search_fields = ["tenant__slug", "stripe_customer_id", "stripe_subscription_id"]
    exclude = ["alert_webhook_secret"]
    raw_id_fields = ["tenant"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        caps.invalidate(obj.tenant_id)
        if "plan" in form.changed_data:  # Stripe follows a plan set by hand (items sync)
            transaction.on_commit(partial(schedule_items_sync, obj.tenant_id))


@admin.register(AgentBudget)
class AgentBudgetAdmin(TenantOwnedAdmin):
    list_display = ["tenant", "agent", "monthly_tcu", "updated_at"]
    raw_id_fields = ["tenant", "agent"]


@admin.register(AlertSent)
class AlertSentAdmin(TenantOwnedAdmin):
    list_display = [
        "tenant",
        "period",
        "threshold",
        "value",
        "limit",
        "emails_sent",
        "webhook_status",
        "webhook_attempts",
        "created_at",
    ]
    list_filter = ["threshold", "period", "webhook_status"]
    search_fields = ["tenant__slug"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(TenantOwnedAdmin):
    list_display = ["tenant", "user", "level", "title", "created_at", "read_at"]
    list_filter = ["level"]
    search_fields = ["tenant__slug", "title"]
    raw_id_fields = ["tenant", "user"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(TenantOwnedAdmin):
    list_display = [
        "tenant",
        "period",
        "kind",
        "state",
        "tokens",
        "amount_cents",
        "pushed_amount_cents",
        "invoiced_cents",
        "stripe_invoice_item_id",
        "attempts",
        "last_error",
        "pushed_at",
    ]
    list_filter = ["state", "kind", "period"]
    search_fields = ["tenant__slug", "stripe_invoice_item_id"]

    def get_readonly_fields(self, request, obj=None):
        # The ledger mirrors Stripe: hand edits would break the exactly-once guarantee.
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "type", "tenant", "received_at", "processed_at", "result"]
    list_filter = ["type"]
    search_fields = ["event_id"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class IssueInline(admin.TabularInline):
    model = ReconciliationIssue
    extra = 0
    fields = ("tenant", "kind", "detail", "repaired", "resolved_at")
    readonly_fields = ("tenant", "kind", "detail", "repaired", "resolved_at")
    can_delete = False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "period",
        "tenants_checked",
        "issues_found",
        "issues_repaired",
        "finished_at",
    ]
    inlines = [IssueInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


@admin.register(ReconciliationIssue)
class ReconciliationIssueAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "period", "kind", "repaired", "resolved_at", "detail"]
    list_filter = ["kind", "repaired", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["tenant__slug", "detail"]
    actions = ["mark_resolved"]

    @admin.action(description="Mark selected issues resolved")
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet) -> None:
        n = queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
        self.message_user(request, f"{n} issue{pluralize(n)} marked resolved.", messages.SUCCESS)
