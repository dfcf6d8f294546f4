"""Template filters for the one vocabulary of `tenants.vocabulary`: `{{ prefs.mode|mode_label }}`,
`{{ m.role|role_description }}`, `{{ key|key_state }}`, `{% for c in event|audit_changes %}`."""

from __future__ import annotations

from django import template

from tenants import vocabulary
from tenants.models import ApiKey, AuditEvent

register = template.Library()


@register.filter
def mode_label(mode: str | None) -> str:
    return vocabulary.mode_label(mode)


@register.filter
def mode_description(mode: str | None) -> str:
    return vocabulary.MODE_DESCRIPTIONS.get(mode or "", "")


@register.filter
def role_label(role: str | None) -> str:
    return vocabulary.role_label(role)


@register.filter
def role_description(role: str | None) -> str:
    return vocabulary.ROLE_DESCRIPTIONS.get(role or "", "")


@register.filter
def key_state(key: ApiKey) -> str:
    return vocabulary.key_state(key)


@register.filter
def key_state_label(key: ApiKey) -> str:
    return vocabulary.KEY_STATES[vocabulary.key_state(key)]


@register.filter
def scopes_label(scopes: list[str]) -> str:
    return vocabulary.value_text("scopes", list(scopes or []))


@register.filter
def action_label(action: str) -> str:
    return vocabulary.action_label(action)


@register.filter
def object_label(object_type: str) -> str:
    return vocabulary.object_label(object_type)


@register.filter
def audit_changes(event: AuditEvent) -> list[vocabulary.Change]:
    return vocabulary.audit_changes(event.action, event.changes)
