"""The audit log: `audit_record` is called by every service that changes configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models

from .models import ApiKey, AuditEvent, Tenant, User

SECRET_FIELD_MARKERS = ("key", "secret", "password", "token")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: a logged-in user, a tenant API key, or the system (both None)."""

    user: User | None = None
    api_key: ApiKey | None = None
    ip: str | None = None

    @classmethod
    def from_request(cls, request: Any) -> Actor:
        user = getattr(request, "user", None)
        api_key = getattr(request, "api_key", None)
        if user is not None and not isinstance(user, User):
            user = None
        return cls(user=user, api_key=api_key, ip=client_ip(request))


SYSTEM = Actor()


def client_ip(request: Any) -> str | None:
    meta = getattr(request, "META", {})
    return meta.get("REMOTE_ADDR") or None


def is_secret_name(name: str) -> bool:
    """`api_key`, `secret_access_key`, `bearer_token`, `apikey`: the last word of the name decides, so
    `max_tokens`, `key_id` and `api_key_masked` (already masked) are not secrets."""
    return name.lower().rsplit("_", 1)[-1].endswith(SECRET_FIELD_MARKERS)


def _safe_value(name: str, value: Any) -> Any:
    if is_secret_name(name):
        return "[changed]" if value else value
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, str | int | float | bool | list | dict) or value is None:
        return value
    return str(value)


def safe_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Changed fields with secret values replaced by a marker."""
    return {name: _safe_value(name, value) for name, value in changes.items()}


def audit_record(
    *,
    tenant: Tenant,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    changes: dict[str, Any] | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
) -> AuditEvent:
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:200]
    return AuditEvent.objects.for_tenant(tenant).create(
        actor_user=actor.user,
        actor_key=actor.api_key,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:200],
        changes=safe_changes(changes or {}),
        ip=actor.ip,
    )
