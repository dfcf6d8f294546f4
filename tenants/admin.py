"""Django admin for tenants, people, agents, keys and the audit log; key hashes are never shown."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils import timezone

from .admin_base import TenantOwnedAdmin
from .keys import invalidate_key_cache
from .models import Agent, ApiKey, AuditEvent, Invitation, Membership, Tenant, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]

    def get_queryset(self, request):
        return Membership.objects.unscoped().select_related("user")


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "eu_only", "is_active", "created_at"]
    list_filter = ["eu_only", "is_active"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(TenantOwnedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "tenant__slug"]
    list_select_related = ["user", "tenant"]


@admin.register(Invitation)
class InvitationAdmin(TenantOwnedAdmin):
    list_display = ["email", "tenant", "role", "created_at", "accepted_at", "revoked_at"]
    list_filter = ["role"]
    search_fields = ["email", "tenant__slug"]


@admin.register(Agent)
class AgentAdmin(TenantOwnedAdmin):
    list_display = ["slug", "name", "tenant", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["slug", "name", "tenant__slug"]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantOwnedAdmin):
    list_display = ["name", "masked", "tenant", "scopes", "agent", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "tenant__slug"]
    exclude = ["key_hash"]
    # The allow-list and rotation change through the tenant's services (validated, audited, announced to the
    # gateway), not here.
    readonly_fields = [
        "prefix",
        "last4",
        "allowed_models",
        "rotated_at",
        "previous_expires_at",
        "last_used_at",
        "created_at",
        "created_by",
    ]
    actions = ["revoke_keys"]

    def has_add_permission(self, request):
        return False  # keys are created by the tenant (shown once), never in admin

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            invalidate_key_cache(key)


@admin.register(AuditEvent)
class AuditEventAdmin(TenantOwnedAdmin):
    list_display = ["created_at", "tenant", "action", "object_type", "object_repr", "actor_user", "ip"]
    list_filter = ["action"]
    search_fields = ["action", "object_repr", "tenant__slug"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
