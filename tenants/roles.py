"""Membership roles and the permission matrix every page and endpoint checks."""

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    BILLING = "billing", "Billing"


class Perm:
    MANAGE_LLM = "manage_llm"
    MANAGE_KEYS = "manage_keys"
    MANAGE_AGENTS = "manage_agents"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_BILLING = "manage_billing"
    MANAGE_CAPS = "manage_caps"
    VIEW_AUDIT = "view_audit"
    VIEW_USAGE = "view_usage"
    VIEW_CONFIG = "view_config"
    USE_ASSISTANT = "use_assistant"


_ALL: set[str] = {Role.OWNER, Role.ADMIN, Role.MEMBER, Role.BILLING}
PERMISSIONS: dict[str, set[str]] = {
    Perm.MANAGE_LLM: {Role.OWNER, Role.ADMIN},
    Perm.MANAGE_KEYS: {Role.OWNER, Role.ADMIN},
    Perm.MANAGE_AGENTS: {Role.OWNER, Role.ADMIN},
    Perm.MANAGE_MEMBERS: {Role.OWNER, Role.ADMIN},
    Perm.MANAGE_BILLING: {Role.OWNER, Role.BILLING},
    Perm.MANAGE_CAPS: {Role.OWNER, Role.ADMIN, Role.BILLING},
    Perm.VIEW_AUDIT: {Role.OWNER, Role.ADMIN},
    Perm.VIEW_USAGE: _ALL,
    Perm.VIEW_CONFIG: _ALL,
    Perm.USE_ASSISTANT: {Role.OWNER, Role.ADMIN, Role.MEMBER},
}

# A tenant API key with the `manage` scope acts with these rights (never members or billing).
MANAGE_KEY_PERMS = {
    Perm.MANAGE_LLM, Perm.MANAGE_KEYS, Perm.MANAGE_AGENTS, Perm.MANAGE_CAPS,
    Perm.VIEW_AUDIT, Perm.VIEW_USAGE, Perm.VIEW_CONFIG, Perm.USE_ASSISTANT,
}


def role_has(role: str | None, perm: str) -> bool:
    return role is not None and role in PERMISSIONS.get(perm, set())
