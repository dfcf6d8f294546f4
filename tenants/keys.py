"""Gateway API keys: creation (shown once), hashed lookup with a short cache, allow-lists, rotation with a grace
period, revocation."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from .allowlist import parse_allow_list
from .audit import Actor, audit_record
from .models import Agent, ApiKey, ApiKeyScope, Tenant
from .validators import parse_tcu

KEY_PREFIX = "byok-"
_CACHE_TTL = 60
_LAST_USED_EVERY = 60
GRACE_DEFAULT_SECONDS = 24 * 3600
GRACE_MAX_SECONDS = 7 * 24 * 3600
VALID_SCOPES = {s.value for s in ApiKeyScope}

# Sent with `key_hash` when a key is revoked or changed; the gateway (llm) forgets its cached copy in every
# process at once. A signal, because tenants is below llm and never imports it.
key_changed = Signal()


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _cache_key(key_hash: str) -> str:
    # v2: KeyInfo gained the allow-lists; entries cached by a previous release are not read back.
    return f"apikey:v2:{key_hash}"


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
    # What the key, and its agent, may call (tenants/allowlist.py); empty = anything. Carried here so the check
    # costs no query.
    allowed_models: tuple[str, ...] = ()
    agent_allowed_models: tuple[str, ...] = ()

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
    allowed_models: object = None,
) -> tuple[ApiKey, str]:
    """Create a key; return it with the plaintext, which is never stored or shown again.

    Names are unique among a tenant's keys in use: a taken one is refused, or, for scripts that create a key
    each run (`rename_if_taken`), numbered ("bench 2")."""
    errors: dict[str, list[str]] = {}
    allowed: list[str] = []
    try:
        allowed = parse_allow_list(allowed_models)
    except ValueError as exc:
        errors["allowed_models"] = [str(exc)]
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
    raw = _new_secret()
    try:
        key = _insert(tenant, actor, raw, name, scopes, agent, expires_at, spend_limit_tcu, allowed)
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
    allowed: list[str],
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
            allowed_models=allowed,
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
                "allowed_models": allowed,
            },
        )
    return key


def _new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def apikey_rotate(
    *, key: ApiKey, actor: Actor, grace_seconds: object = GRACE_DEFAULT_SECONDS
) -> tuple[ApiKey, str]:
    """Give the key a new secret under the same id; the old secret keeps working for `grace_seconds` (0..7 days),
    then stops. A secret from an earlier rotation still in its grace period stops at once. Audited (never a
    secret); every gateway process forgets the old secret's cached state at once. Returns the key and the new
    secret, which is never stored or shown again."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
        raise ValidationError({"grace_seconds": ["Give the grace period as a whole number of seconds."]})
    if not 0 <= grace_seconds <= GRACE_MAX_SECONDS:
        raise ValidationError(
            {"grace_seconds": [f"The grace period is 0 to {GRACE_MAX_SECONDS:,} seconds (7 days)."]}
        )
    if not key.is_active:
        state = "revoked" if key.revoked_at is not None else "expired"
        raise ValidationError({"key": [f"This key is {state}; create a new key instead."]})
    raw = _new_secret()
    now = timezone.now()
    old_hashes = [h for h in (key.key_hash, key.previous_key_hash) if h]
    with transaction.atomic():
        key.previous_key_hash = key.key_hash if grace_seconds else None
        key.previous_expires_at = now + timedelta(seconds=grace_seconds) if grace_seconds else None
        key.key_hash = hash_key(raw)
        key.prefix = raw[:12]
        key.last4 = raw[-4:]
        key.rotated_at = now
        key.save(
            update_fields=[
                "previous_key_hash",
                "previous_expires_at",
                "key_hash",
                "prefix",
                "last4",
                "rotated_at",
            ]
        )
        audit_record(
            tenant=key.tenant,
            actor=actor,
            action="apikey.rotate",
            obj=key,
            changes={
                "grace_seconds": grace_seconds,
                "previous_expires_at": key.previous_expires_at.isoformat()
                if key.previous_expires_at
                else None,
            },
        )
    # Now, and again after commit: a reader between the two could re-cache the old state.
    _forget_hashes(old_hashes)
    transaction.on_commit(lambda: _forget_hashes(old_hashes))
    return key, raw


def apikey_set_allowed_models(*, key: ApiKey, actor: Actor, allowed_models: object) -> ApiKey:
    """Set (or clear with an empty list) what the key may call; audited; effective at once."""
    try:
        allowed = parse_allow_list(allowed_models)
    except ValueError as exc:
        raise ValidationError({"allowed_models": [str(exc)]}) from None
    return _set_key_field(key, actor, "allowed_models", allowed, action="apikey.allowed_models")


def apikey_revoke(*, key: ApiKey, actor: Actor) -> ApiKey:
    if key.revoked_at is None:
        with transaction.atomic():
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(tenant=key.tenant, actor=actor, action="apikey.revoke", obj=key)
        _forget_now_and_after_commit(key)
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
    return _set_key_field(key, actor, "spend_limit_tcu", value, action="apikey.spend_limit")


def _set_key_field(key: ApiKey, actor: Actor, field: str, value: object, *, action: str) -> ApiKey:
    """Change one setting of a live key (a revoked one refuses), audited with before → after; nothing is written
    or audited when the value is the same."""
    if key.revoked_at is not None:
        raise ValidationError({field: ["This key is revoked."]})
    before = getattr(key, field)
    if value == before:
        return key
    with transaction.atomic():
        setattr(key, field, value)
        key.save(update_fields=[field])
        audit_record(tenant=key.tenant, actor=actor, action=action, obj=key, changes={field: [before, value]})
    _forget_now_and_after_commit(key)
    return key


def _forget_now_and_after_commit(key: ApiKey) -> None:
    # Now, and again after commit: a reader between the two could re-cache the old state.
    invalidate_key_cache(key)
    transaction.on_commit(lambda: invalidate_key_cache(key))


def invalidate_key_cache(key: ApiKey) -> None:
    """Forget the key's cached state under each of its secrets (the current one and one in its grace period)."""
    _forget_hashes([h for h in (key.key_hash, key.previous_key_hash) if h])


def _forget_hashes(hashes: list[str]) -> None:
    for key_hash in hashes:
        cache.delete(_cache_key(key_hash))
        key_changed.send(sender=ApiKey, key_hash=key_hash)


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
        key = (
            ApiKey.objects.unscoped()
            .select_related("tenant", "agent")
            .filter(Q(key_hash=key_hash) | Q(previous_key_hash=key_hash))
            .first()
        )
        if key is None:
            return None
        expires_at = key.expires_at
        if key.key_hash != key_hash:  # the secret before a rotation: valid until its grace period ends
            grace_end = key.previous_expires_at or timezone.now()
            expires_at = grace_end if expires_at is None else min(expires_at, grace_end)
        info = KeyInfo(
            id=key.id,
            tenant_id=key.tenant_id,
            tenant_slug=key.tenant.slug,
            scopes=tuple(key.scopes),
            agent_id=key.agent_id,
            agent_slug=key.agent.slug if key.agent else None,
            expires_at=expires_at,
            revoked=key.revoked_at is not None,
            tenant_active=key.tenant.is_active,
            spend_limit_tcu=key.spend_limit_tcu,
            allowed_models=tuple(key.allowed_models or ()),
            agent_allowed_models=tuple(key.agent.allowed_models or ()) if key.agent else (),
        )
        cache.set(ck, info, _CACHE_TTL)
    return info


def touch_last_used(key_id: int) -> None:
    """Record use at most once a minute per key, so there is no write per request."""
    if cache.add(f"apikey-used:{key_id}", 1, _LAST_USED_EVERY):
        ApiKey.objects.unscoped().filter(id=key_id).update(last_used_at=timezone.now())
