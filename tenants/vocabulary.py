"""The words pages use for the codes stored underneath: modes, roles, key states, audit actions, fields and values.

One vocabulary, so a mode, a role or a change reads the same on every page; templates reach it through the
`vocabulary` template tags. Codes not listed here still read as words (`max_tokens` → "Max tokens")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.utils import timezone

from .audit import is_secret_name

if TYPE_CHECKING:
    from .models import ApiKey

MODES: dict[str, str] = {
    "platform": "Managed LLM",
    "byok": "Bring your own key",
    "custom": "Enterprise custom endpoint",
}
MODE_DESCRIPTIONS: dict[str, str] = {
    "platform": "Our models, billed per agent with your plan.",
    "byok": "Your provider account (OpenAI, Anthropic, OpenRouter, …); you pay the provider directly.",
    "custom": "Your own server: Azure OpenAI, AWS Bedrock, or any OpenAI-compatible endpoint (vLLM, Ollama, …).",
}
ENDPOINT_KINDS: dict[str, str] = {
    "openai_compatible": "OpenAI-compatible server",
    "azure_openai": "Azure OpenAI",
    "bedrock": "AWS Bedrock",
}
ROLES: dict[str, str] = {"owner": "Owner", "admin": "Admin", "member": "Member", "billing": "Billing"}
ROLE_DESCRIPTIONS: dict[str, str] = {
    "owner": "Everything, including the plan and payment and who else is an owner.",
    "admin": "Everything but the plan, payment and the owner role: LLM settings, API keys, agents, members, "
    "spend caps and the audit log.",
    "member": "Uses the assistant; sees the LLM settings, agents and usage.",
    "billing": "The plan, payment, invoices and spend caps; sees the LLM settings and usage.",
}
SCOPES: dict[str, str] = {"gateway": "Gateway", "manage": "Manage"}
KEY_STATES: dict[str, str] = {"active": "Active", "revoked": "Revoked", "expired": "Expired"}

# What happened, per audit action, in words a person searches for ("key", "budget", "invite").
ACTIONS: dict[str, str] = {
    "tenant.create": "Created the workspace",
    "agent.create": "Created an agent",
    "agent.update": "Changed an agent",
    "agent.delete": "Deleted an agent",
    "apikey.create": "Created an API key",
    "apikey.revoke": "Revoked an API key",
    "apikey.spend_limit": "Changed an API key's monthly limit",
    "apikey.allowed_models": "Changed what an API key may call",
    "apikey.rotate": "Gave an API key a new secret",
    "member.invite": "Invited a member",
    "member.invite.resend": "Sent an invitation again",
    "member.invite.revoke": "Revoked an invitation",
    "member.join": "A member joined",
    "member.role": "Changed a member's role",
    "member.remove": "Removed a member",
    "llm.preferences.save": "Changed the LLM settings",
    "llm.preferences.delete": "Reset an agent to the workspace's LLM settings",
    "llm.credential.create": "Saved a provider key",
    "llm.credential.update": "Changed a provider key",
    "llm.credential.delete": "Deleted a provider key",
    "llm.route.create": "Created a route",
    "llm.route.update": "Changed a route",
    "llm.route.delete": "Deleted a route",
    "llm.route.import": "Imported routes",
    "llm.connection_test.new_origin": "Tested a connection to a new address",
    "assistant.thread.delete": "Deleted an assistant conversation",
    "job.cancel": "Cancelled a job",
    "billing.plan.assign": "Assigned a plan",
    "billing.plan.change": "Changed the plan",
    "billing.plan.checkout": "Started paying for a plan",
    "billing.caps.update": "Changed the spend caps",
    "billing.agent_budget.update": "Changed an agent's monthly budget",
    "billing.alert_webhook.update": "Changed the alert webhook",
    "billing.managed.set": "Changed an agent's managed LLM plan",
    "billing.managed.end": "Turned managed LLM off for an agent",
    "billing.managed.checkout": "Started paying for managed LLM",
    "billing.managed.migrate": "Moved managed LLM to per-agent plans",
}
# Actions whose changes are recorded as `field: [before, after]`; the others record the values set.
_PAIRED = {
    "agent.update",
    "apikey.spend_limit",
    "apikey.allowed_models",
    "member.role",
    "llm.preferences.save",
    "billing.plan.assign",
    "billing.plan.change",
    "billing.managed.set",
    "billing.managed.end",
}
OBJECTS: dict[str, str] = {
    "tenant": "Workspace",
    "agent": "Agent",
    "apikey": "API key",
    "membership": "Member",
    "invitation": "Invitation",
    "preferences": "LLM settings",
    "credential": "Provider key",
    "route": "Route",
    "connection_test": "Connection test",
    "subscription": "Subscription",
    "thread": "Conversation",
    "job": "Job",
}
FIELDS: dict[str, str] = {
    "mode": "Mode",
    "model": "Model",
    "temperature": "Temperature",
    "max_tokens": "Max tokens",
    "eu_only": "EU residency",
    "fallbacks": "Fallback models",
    "api_key": "API key",
    "api_key_masked": "API key",
    "secret": "Signing secret",
    "base_url": "Endpoint URL",
    "kind": "Endpoint type",
    "input_usd_per_mtok": "Input price (USD / 1M tokens)",
    "output_usd_per_mtok": "Output price (USD / 1M tokens)",
    "cache_read_usd_per_mtok": "Cache-read price (USD / 1M tokens)",
    "cache_write_usd_per_mtok": "Cache-write price (USD / 1M tokens)",
    "spend_limit_tcu": "Monthly limit (TCU)",
    "allowed_models": "May call",
    "grace_seconds": "Old secret kept working for (seconds)",
    "previous_expires_at": "Old secret stops",
    "monthly_tcu": "Monthly budget (TCU)",
    "warn_tcu": "Warning level (TCU)",
    "hard_tcu": "Hard cap (TCU)",
    "expires_at": "Expires",
    "is_active": "Active",
    "slug": "Id",
    "url": "Webhook URL",
    "tier": "Managed LLM plan",
    "email": "E-mail",
}
# Field codes whose values are codes of their own vocabulary.
_VALUE_WORDS: dict[str, dict[str, str]] = {
    "mode": MODES,
    "role": ROLES,
    "kind": ENDPOINT_KINDS,
    "scopes": SCOPES,
}
_MAX_VALUE = 160
_CACHE_PRICES = ("cache_read_usd_per_mtok", "cache_write_usd_per_mtok")


def words(code: str) -> str:
    """A code nobody listed, as words: `max_tokens` → "Max tokens"."""
    text = re.sub(r"[._]+", " ", code or "").strip()
    return text[:1].upper() + text[1:]


def mode_label(mode: str | None) -> str:
    return MODES.get(mode or "", words(mode or "")) if mode else "—"


def role_label(role: str | None) -> str:
    return ROLES.get(role or "", words(role or ""))


def action_label(action: str) -> str:
    return ACTIONS.get(action, words(action))


def object_label(object_type: str) -> str:
    return OBJECTS.get(object_type, words(object_type))


def field_label(field: str) -> str:
    return FIELDS.get(field, words(field))


def is_secret_field(field: str) -> bool:
    """A field whose values are never shown (`api_key`, `secret_access_key`, `bearer_token`, a masked key), but
    not `max_tokens` or `key_id`: the last word of the name decides."""
    return is_secret_name(field) or field.lower().endswith("_masked")


def key_state(key: ApiKey) -> str:
    """`active`, `revoked` or `expired`: the one word the keys page and an agent's page both use."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return "expired"
    return "active"


def value_text(field: str, value: object) -> str:
    """A stored value as a person reads it: "none", "yes", the mode's or role's name, a comma-separated list."""
    if field in _CACHE_PRICES and (value is None or value == ""):
        return "the input price"  # an endpoint's empty cache price, as the catalog's
    if value is None or value == "" or value == []:
        return "never" if field == "expires_at" else "none"
    if field.endswith("_usd_per_mtok") and isinstance(value, int | float) and not isinstance(value, bool):
        return format(Decimal(str(value)).normalize(), "f")  # 3.0 → "3", 0.000001 as it is
    if isinstance(value, bool):
        return "yes" if value else "no"
    vocabulary = _VALUE_WORDS.get(field)
    if isinstance(value, list):
        text = ", ".join(value_text(field, item) for item in value)
    elif isinstance(value, dict):
        text = "; ".join(f"{field_label(k)}: {value_text(k, v)}" for k, v in value.items())
    elif vocabulary is not None and isinstance(value, str):
        text = vocabulary.get(value, value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    else:
        text = str(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


@dataclass(frozen=True, slots=True)
class Change:
    """One changed field of an audit event: its name, and the value before and after in words (before is None
    when the event records only the value set; both are None for a secret, which reads "changed")."""

    field: str
    before: str | None
    after: str | None

    @property
    def secret(self) -> bool:
        return self.after is None


def audit_changes(action: str, changes: object) -> list[Change]:
    """An audit event's changes in words, before → after where the event recorded both; secrets only "changed"."""
    if not isinstance(changes, dict):
        return []
    if set(changes) == {"before", "after"} and isinstance(changes["after"], dict):
        before = changes["before"] if isinstance(changes["before"], dict) else {}
        return [
            _change(name, before.get(name), after, paired=True)
            for name, after in changes["after"].items()
            if before.get(name) != after
        ]
    paired = action in _PAIRED
    rows = []
    for name, value in changes.items():
        if paired and isinstance(value, list) and len(value) == 2:
            rows.append(_change(name, value[0], value[1], paired=True))
        else:
            rows.append(_change(name, None, value, paired=False))
    return rows


def _change(name: str, before: object, after: object, *, paired: bool) -> Change:
    label = field_label(name)
    if is_secret_field(name) or after == "[changed]" or before == "[changed]":
        return Change(label, None, None)
    return Change(label, value_text(name, before) if paired else None, value_text(name, after))


def audit_search_actions(query: str, actions: list[str]) -> list[str]:
    """The actions among `actions` that plain words find: every word in the action's description, its object's
    name or the action's code ("key", "api key", "budget", "apikey." all work)."""
    terms = [t for t in re.split(r"\s+", query.lower().strip()) if t]
    found = []
    for action in actions:
        haystack = f"{action_label(action)} {action} {words(action)}".lower()
        if all(term in haystack for term in terms):
            found.append(action)
    return found
