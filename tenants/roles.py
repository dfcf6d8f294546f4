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
    RUN_JOBS = "run_jobs"
    ALL_JOBS = "all_jobs"


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
    # Assistant threads are personal: every role that may chat sees only its own threads.
    Perm.USE_ASSISTANT: {Role.OWNER, Role.ADMIN, Role.MEMBER},
    # Batch jobs: members start, see (with results) and cancel their own; owners and admins everyone's.
    # Billing sees none: what jobs cost is in usage and billing, their prompts and outputs are not its business.
    Perm.RUN_JOBS: {Role.OWNER, Role.ADMIN, Role.MEMBER},
    Perm.ALL_JOBS: {Role.OWNER, Role.ADMIN},
}

# A tenant API key with the `manage` scope acts with these rights (never members or billing).
MANAGE_KEY_PERMS = {
    Perm.MANAGE_LLM,
    Perm.MANAGE_KEYS,
    Perm.MANAGE_AGENTS,
    Perm.MANAGE_CAPS,
    Perm.VIEW_AUDIT,
    Perm.VIEW_USAGE,
    Perm.VIEW_CONFIG,
    Perm.USE_ASSISTANT,
    Perm.RUN_JOBS,
    Perm.ALL_JOBS,
}


def role_has(role: str | None, perm: str) -> bool:
    return role is not None and role in PERMISSIONS.get(perm, set())


# Member management. Owner is above admin; admin is above member and billing, which are peers
# (different rights, neither includes the other).
_RANK: dict[str, int] = {Role.OWNER: 3, Role.ADMIN: 2, Role.MEMBER: 1, Role.BILLING: 1}


def role_change_refusal(*, actor_role: str | None, is_self: bool, current: str, new: str) -> str | None:
    """Why `actor_role` may not move a membership from `current` to `new` (None: allowed).

    Only owners grant, change or take away the owner role; admins manage admins, members and billing;
    nobody raises their own role (lowering your own is fine, within the last-owner rule).
    """
    if not role_has(actor_role, Perm.MANAGE_MEMBERS):
        return "Only owners and admins manage members."
    if is_self and _RANK.get(new, 0) > _RANK.get(current, 0):
        return "Nobody can raise their own role; ask an owner."
    if (current == Role.OWNER or new == Role.OWNER) and actor_role != Role.OWNER:
        return "Only an owner can grant, change or remove the owner role."
    return None


def removal_refusal(*, actor_role: str | None, target: str) -> str | None:
    """Why `actor_role` may not remove a member whose role is `target` (None: allowed)."""
    if not role_has(actor_role, Perm.MANAGE_MEMBERS):
        return "Only owners and admins manage members."
    if target == Role.OWNER and actor_role != Role.OWNER:
        return "Only an owner can remove an owner."
    return None


def invite_refusal(*, actor_role: str | None, role: str) -> str | None:
    """Why `actor_role` may not invite someone as `role` (None: allowed): never above the inviter's role."""
    if not role_has(actor_role, Perm.MANAGE_MEMBERS):
        return "Only owners and admins invite members."
    if _RANK.get(role, 0) > _RANK.get(actor_role or "", 0):
        return "You cannot invite someone to a role above your own."
    return None
