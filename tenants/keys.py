"""Gateway API keys: creation (shown once), hashed lookup with a short cache, revocation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

from .audit import Actor, audit_record
from .models import Agent, ApiKey, ApiKeyScope, Tenant
from .validators import parse_tcu

KEY_PREFIX = "byok-"
_CACHE_TTL = 60
_LAST_USED_EVERY = 60
VALID_SCOPES = {s.value for s in ApiKeyScope}

# Sent with `key_hash` when a key is revoked or changed; the gateway (llm) forgets its cached copy in every
# process at once. A signal, because tenants is below llm and never imports it.
key_changed = Signal()


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _cache_key(key_hash: str) -> str:
    return f"apikey:{key_hash}"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What authentication needs to know about a key; cached so no query runs per request."""

    id: int
    tenant_id: int
    tenant_slug: str
    scopes: tuple[str, ...]
    agent_id: int | None
    agent_slug: str | None
    expires_at: datetime | None
    revoked: bool
    tenant_active: bool
    spend_limit_tcu: int | None = None

    def is_valid(self, now: datetime | None = None) -> bool:
        if self.revoked or not self.tenant_active:
            return False
        return self.expires_at is None or self.expires_at > (now or timezone.now())


def apikey_create(
    *,
    tenant: Tenant,
    actor: Actor,
    name: str,
    scopes: list[str],
    agent: Agent | None = None,
    expires_at: datetime | None = None,
    spend_limit_tcu: int | None = None,
    rename_if_taken: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key; return it with the plaintext, which is never stored or shown again.

    Names are unique among a tenant's keys in use: a taken one is refused, or, for scripts that create a key
    each run (`rename_if_taken`), numbered ("bench 2")."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()[:100]
    if not name:
        errors["name"] = ["Give the key a name."]
    elif rename_if_taken:
        name = _free_name(tenant, name)
    elif _name_taken(tenant, name):
        errors["name"] = [_NAME_TAKEN.format(name=name)]
    scopes = list(dict.fromkeys(scopes or [ApiKeyScope.GATEWAY]))
    unknown = [s for s in scopes if s not in VALID_SCOPES]
    if unknown:
        errors["scopes"] = [f"Unknown scope {', '.join(unknown)}; choose from gateway, manage."]
    if agent is not None and agent.tenant_id != tenant.id:
        errors["agent"] = ["No such agent."]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = ["The expiry must be in the future."]
    if spend_limit_tcu is not None:
        try:
            spend_limit_tcu = parse_tcu(spend_limit_tcu)
        except ValueError as exc:
            errors["spend_limit_tcu"] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        key = _insert(tenant, actor, raw, name, scopes, agent, expires_at, spend_limit_tcu)
    except IntegrityError:  # a concurrent create took the name between the check and the insert
        raise ValidationError({"name": [_NAME_TAKEN.format(name=name)]}) from None
    return key, raw


_NAME_TAKEN = "A key named “{name}” is already in use in this workspace; choose another name."


def _name_taken(tenant: Tenant, name: str) -> bool:
    return ApiKey.objects.for_tenant(tenant).filter(name__iexact=name, revoked_at__isnull=True).exists()


def _free_name(tenant: Tenant, name: str) -> str:
    candidate, n = name, 1
    while _name_taken(tenant, candidate):
        n += 1
        suffix = f" {n}"
        candidate = name[: 100 - len(suffix)] + suffix
    return candidate


def _insert(
    tenant: Tenant,
    actor: Actor,
    raw: str,
    name: str,
    scopes: list[str],
    agent: Agent | None,
    expires_at: datetime | None,
    spend_limit_tcu: int | None,
) -> ApiKey:
    with transaction.atomic():
        key = ApiKey.objects.for_tenant(tenant).create(
            name=name,
            prefix=raw[:12],
            last4=raw[-4:],
            key_hash=hash_key(raw),
            scopes=scopes,
            agent=agent,
            expires_at=expires_at,
            spend_limit_tcu=spend_limit_tcu,
            created_by=actor.user,
        )
        audit_record(
            tenant=tenant,
            actor=actor,
            action="apikey.create",
            obj=key,
            changes={
                "name": name,
                "scopes": scopes,
                "agent": agent.slug if agent else None,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return key


def apikey_revoke(*, key: ApiKey, actor: Actor) -> ApiKey:
    if key.revoked_at is None:
        with transaction.atomic():
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(tenant=key.tenant, actor=actor, action="apikey.revoke", obj=key)
        # Now, and again after commit: a reader between the two could re-cache the old state.
        invalidate_key_cache(key)
        transaction.on_commit(lambda: invalidate_key_cache(key))
    return key


def apikey_set_spend_limit(*, key: ApiKey, actor: Actor, spend_limit_tcu: object) -> ApiKey:
    """Set (or clear with None) a key's monthly TCU limit over every call made with it; audited; effective at
    once (the gateway forgets its cached copy of the key)."""
    value: int | None = None
    if spend_limit_tcu is not None:
        try:
            value = parse_tcu(spend_limit_tcu)
        except ValueError as exc:
            raise ValidationError({"spend_limit_tcu": [str(exc)]}) from None
    if key.revoked_at is not None:
        raise ValidationError({"spend_limit_tcu": ["This key is revoked."]})
    with transaction.atomic():
        before = key.spend_limit_tcu
        key.spend_limit_tcu = value
        key.save(update_fields=["spend_limit_tcu"])
        audit_record(
            tenant=key.tenant,
            actor=actor,
            action="apikey.spend_limit",
            obj=key,
            changes={"spend_limit_tcu": [before, value]},
        )
    invalidate_key_cache(key)
    transaction.on_commit(lambda: invalidate_key_cache(key))
    return key


def invalidate_key_cache(key: ApiKey) -> None:
    cache.delete(_cache_key(key.key_hash))
    key_changed.send(sender=ApiKey, key_hash=key.key_hash)


def key_info(raw: str) -> KeyInfo | None:
    """Look a presented key up by hash, from the cache when possible. None when unknown."""
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    return key_info_by_hash(hash_key(raw))


def key_info_by_hash(key_hash: str) -> KeyInfo | None:
    """The key with this hash, from the cache when possible. None when unknown."""
    ck = _cache_key(key_hash)
    info = cache.get(ck)
    if info is None:
        key = ApiKey.objects.unscoped().select_related("tenant", "agent").filter(key_hash=key_hash).first()
        if key is None:
            return None
        info = KeyInfo(
            id=key.id,
            tenant_id=key.tenant_id,
            tenant_slug=key.tenant.slug,
            scopes=tuple(key.scopes),
            agent_id=key.agent_id,
            agent_slug=key.agent.slug if key.agent else None,
            expires_at=key.expires_at,
            revoked=key.revoked_at is not None,
            tenant_active=key.tenant.is_active,
            spend_limit_tcu=key.spend_limit_tcu,
        )
        cache.set(ck, info, _CACHE_TTL)
    return info


def touch_last_used(key_id: int) -> None:
    """Record use at most once a minute per key, so there is no write per request."""
    if cache.add(f"apikey-used:{key_id}", 1, _LAST_USED_EVERY):
        ApiKey.objects.unscoped().filter(id=key_id).update(last_used_at=timezone.now())
