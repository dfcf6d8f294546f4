"""Credentials: a tenant's provider keys and custom endpoints; secrets encrypted, masked on every read.

The plaintext of a secret exists only in the request that sets it and inside the router (`secrets_of`);
it is never returned, logged or put in an audit event.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Final, NotRequired, TypedDict
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from llm.config import encryption
from llm.config.versions import bump_config_version
from llm.models import CREDENTIAL_KINDS, Credential
from tenants.audit import Actor, audit_record
from tenants.models import Tenant

ENDPOINT_KINDS: tuple[str, ...] = ("openai_compatible", "azure_openai", "bedrock", "ollama")
PROVIDER_KINDS = tuple(k for k in CREDENTIAL_KINDS if k not in ENDPOINT_KINDS)
SECRET_FIELDS = ("api_key", "secret_access_key", "headers")
CONFIG_FIELDS = ("deployment", "api_version", "region", "access_key_id", "eu_hosted")
OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434/v1"
PRICE_FIELDS: Final = (
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cache_read_usd_per_mtok",
    "cache_write_usd_per_mtok",
)


class Prices(TypedDict):
    """What a tenant's endpoint costs, USD per 1M tokens; a cache price of None is the input price."""

    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cache_read_usd_per_mtok: Decimal | None
    cache_write_usd_per_mtok: Decimal | None


class CredentialInput(Prices):
    """A credential's fields as `llm.serializers.CredentialWriteSerializer` validated them: complete (what the
    request left out is filled from the stored credential), secrets in plaintext until `_store` encrypts them."""

    kind: str
    name: NotRequired[str]
    base_url: str
    config: dict[str, Any]
    secrets: dict[str, Any]


def mask(secret: str | None) -> str:
    """First 3 characters + "…" + last 4 (shorter secrets show less, never most of themselves)."""
    if not secret:
        return ""
    if len(secret) >= 12:
        return f"{secret[:3]}…{secret[-4:]}"
    return "…" + secret[-2:] if len(secret) >= 6 else "…"


def origin_of(url: str | None) -> tuple[str, str, int | None]:
    """The (scheme, host, port) a credential's secrets are bound to; a blank URL is the provider's own address."""
    url = (url or "").strip()
    if not url:
        return ("", "", None)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    return (
        scheme,
        (parts.hostname or "").rstrip(".").lower(),
        port or {"http": 80, "https": 443}.get(scheme),
    )


def protocol_for_kind(kind: str, provider_protocol: str | None = None) -> str:
    return (
        {
            "openai_compatible": "openai_compat",
            "ollama": "openai_compat",
            "azure_openai": "azure_openai",
            "bedrock": "bedrock",
        }.get(kind)
        or provider_protocol
        or "openai_compat"
    )


def access_credential(*, tenant: Tenant, credential_id: Any) -> Credential:
    """The tenant's credential, or 404 (the same for another tenant's and a missing one)."""
    try:
        return Credential.objects.for_tenant(tenant).select_related("data_key").get(pk=int(credential_id))
    except (Credential.DoesNotExist, ValueError, TypeError):
        raise Http404("No such credential.") from None


def find_credential(*, tenant: Tenant, ref: Any) -> Credential | None:
    """A credential of the tenant by id or name (None when it has none by that reference)."""
    qs = Credential.objects.for_tenant(tenant)
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 18):
        return qs.filter(pk=int(ref)).first()
    if (
        isinstance(ref, str) and ref and "\x00" not in ref
    ):  # no name holds one; PostgreSQL refuses it in a query
        return qs.filter(name=ref).first()
    return None


def credential_for_kind(*, tenant_id: int, kind: str) -> Credential | None:
    """The tenant's key for a provider: the most recently set one when there are several."""
    return (
        Credential.objects.for_tenant(tenant_id)
        .select_related("data_key")
        .filter(kind=kind)
        .order_by("-rotated_at", "-created_at", "-pk")
        .first()
    )


def secrets_of(credential: Credential) -> dict[str, Any]:
    """The decrypted secrets (only the router and connection tests call this)."""
    if not credential.secrets_ciphertext:
        return {}
    return json.loads(encryption.decrypt(credential.data_key, credential.secrets_ciphertext))


# --- services ----------------------------------------------------------------------------------------


def _store(credential: Credential, cleaned: CredentialInput) -> list[str]:
    """Copy cleaned values onto the credential, encrypting the secrets; returns the names of changed fields."""
    changed = []
    for name in ("base_url", "config", *PRICE_FIELDS):
        if getattr(credential, name) != cleaned[name]:
            setattr(credential, name, cleaned[name])
            changed.append(name)
    if cleaned.get("name") and cleaned["name"] != credential.name:
        credential.name = cleaned["name"]
        changed.append("name")
    secrets = cleaned["secrets"]
    old = secrets_of(credential) if credential.pk and credential.secrets_ciphertext else {}
    if secrets != old or not credential.pk:
        data_key = encryption.current_data_key(credential.tenant_id)
        credential.secrets_ciphertext = encryption.encrypt(data_key, json.dumps(secrets)) if secrets else ""
        credential.data_key = data_key
        credential.api_key_masked = mask(secrets.get("api_key") or secrets.get("secret_access_key"))
        changed += [
            f"{k}_masked" if k == "api_key" else k for k in SECRET_FIELDS if secrets.get(k) != old.get(k)
        ]
        if credential.pk:
            credential.rotated_at = timezone.now()
    return changed


def credential_create(*, tenant: Tenant, actor: Actor, data: CredentialInput) -> Credential:
    """Store a credential validated by `llm.serializers.CredentialWriteSerializer`."""
    kind, cleaned = data["kind"], data
    name = cleaned.get("name") or _free_name(tenant, kind)
    with transaction.atomic():
        credential = Credential(tenant=tenant, kind=kind, name=name)
        _store(credential, cleaned)
        try:
            with transaction.atomic():
                credential.save()
        except IntegrityError:
            raise ValidationError({"name": [f"A credential named “{name}” exists already."]}) from None
        audit_record(
            tenant=tenant,
            actor=actor,
            action="llm.credential.create",
            obj=credential,
            changes={
                "kind": kind,
                "name": name,
                "base_url": credential.base_url,
                "api_key_masked": credential.api_key_masked,
                **({p: _price(credential, p) for p in PRICE_FIELDS} if kind in ENDPOINT_KINDS else {}),
            },
        )
    bump_config_version(tenant.id)
    return credential


def credential_update(*, credential: Credential, actor: Actor, data: CredentialInput) -> Credential:
    """Change a credential with values validated by `llm.serializers.CredentialWriteSerializer` (given the
    credential): a new `api_key` rotates it (rotated_at); the serializer kept the secrets left out, and only while
    the origin stayed the same."""
    cleaned = data
    with transaction.atomic():
        changed = _store(credential, cleaned)
        if changed:
            try:
                with transaction.atomic():
                    credential.save()
            except IntegrityError:
                raise ValidationError(
                    {"name": [f"A credential named “{credential.name}” exists already."]}
                ) from None
            audit_record(
                tenant=credential.tenant,
                actor=actor,
                action="llm.credential.update",
                obj=credential,
                changes={name: _audited(credential, name) for name in changed},
            )
    if changed:
        bump_config_version(credential.tenant_id)
    return credential


def _price(credential: Credential, name: str) -> float | None:
    value = getattr(credential, name)
    return float(value) if value is not None else None


def _audited(credential: Credential, name: str) -> Any:
    """A changed field as its audit event records it: the value where it says something and is no secret, else
    only that it changed (the settings in `config`, a secret)."""
    if name in PRICE_FIELDS:
        return _price(credential, name)
    return (
        getattr(credential, name, "[changed]")
        if name in ("name", "base_url", "api_key_masked")
        else "[changed]"
    )


def credential_delete(*, credential: Credential, actor: Actor) -> None:
    tenant = credential.tenant
    with transaction.atomic():
        audit_record(tenant=tenant, actor=actor, action="llm.credential.delete", obj=credential)
        credential.delete()
    bump_config_version(tenant.id)


def credential_mark_verified(credential: Credential) -> None:
    Credential.objects.for_tenant(credential.tenant_id).filter(pk=credential.pk).update(
        last_verified_at=timezone.now()
    )


def _free_name(tenant: Tenant, kind: str) -> str:
    taken = set(
        Credential.objects.for_tenant(tenant).filter(name__startswith=kind).values_list("name", flat=True)
    )
    if kind not in taken:
        return kind
    n = 2
    while f"{kind}-{n}" in taken:
        n += 1
    return f"{kind}-{n}"


def credential_json(credential: Credential) -> dict[str, Any]:
    """The API shape: config and masks, never a secret."""
    config = credential.config or {}
    body: dict[str, Any] = {
        "id": credential.pk,
        "kind": credential.kind,
        "name": credential.name,
        "api_key_masked": credential.api_key_masked or None,
        "base_url": credential.base_url or None,
        "created_at": credential.created_at,
        "rotated_at": credential.rotated_at,
        "last_verified_at": credential.last_verified_at,
    }
    if credential.kind in ENDPOINT_KINDS:
        body.update(
            deployment=config.get("deployment") or None,
            api_version=config.get("api_version") or None,
            region=config.get("region") or None,
            access_key_id=config.get("access_key_id") or None,
            eu_hosted=bool(config.get("eu_hosted")),
            **{p: _price(credential, p) for p in PRICE_FIELDS},
        )
    return body
