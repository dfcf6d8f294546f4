"""Billing admin: plans (admins manage them), subscriptions, budgets, alerts, the ledger and reconciliation."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing import caps
from billing.models import (
    AgentBudget,
    AlertSent,
    LedgerEntry,
    Notification,
    Plan,
    ReconciliationIssue,
    ReconciliationRun,
    StripeEvent,
    Subscription,
)
from tenants.admin_base import TenantOwnedAdmin


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
        self.message_user(request, f"{n} issue(s) marked resolved.", messages.SUCCESS)
