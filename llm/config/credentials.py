"""Credentials: a tenant's provider keys and custom endpoints; secrets encrypted, masked on every read.

The plaintext of a secret exists only in the request that sets it and inside the router (`secrets_of`);
it is never returned, logged or put in an audit event.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from llm.config import encryption, ssrf
from llm.config.versions import bump_config_version
from llm.models import CREDENTIAL_KINDS, Credential
from tenants.audit import Actor, audit_record
from tenants.models import Tenant

ENDPOINT_KINDS = ("openai_compatible", "azure_openai", "bedrock", "ollama")
PROVIDER_KINDS = tuple(k for k in CREDENTIAL_KINDS if k not in ENDPOINT_KINDS)
SECRET_FIELDS = ("api_key", "secret_access_key", "headers")
CONFIG_FIELDS = ("deployment", "api_version", "region", "access_key_id", "eu_hosted")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434/v1"


class ConfigValidationError(ValidationError):
    """Field errors that may nest (`{"custom_endpoint": {"base_url": [...]}}`): `.detail` keeps the nesting for
    the API; as a Django ValidationError the nested fields are flattened to `custom_endpoint.base_url`."""

    def __init__(self, detail: dict[str, Any]):
        self.detail = detail
        flat: dict[str, list[str]] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
            else:
                flat.setdefault(prefix or "non_field_errors", []).extend(
                    [str(v) for v in value] if isinstance(value, list) else [str(value)]
                )

        walk("", detail)
        super().__init__(flat)


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


_SECRET_LABELS = {
    "api_key": "the API key",
    "secret_access_key": "the AWS secret access key",
    "headers": "the extra headers",
}


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


# --- validation (shared by the API and the pages) ---------------------------------------------------


def _decimal(value: Any, name: str, errors: dict) -> Decimal | None:
    if value in (None, ""):
        return Decimal(0)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors[name] = ["Enter a number (USD per 1M tokens)."]
        return None
    if not number.is_finite() or number < 0 or number > 10_000:
        errors[name] = ["Enter a price between 0 and 10000 USD per 1M tokens."]
        return None
    return number


def clean_endpoint(
    kind: str, data: dict[str, Any], existing: Credential | None = None, *, new_origin: str = "refuse"
) -> dict[str, Any]:
    """Validate a credential's fields for its kind; raise ValidationError({field: [msg]}) or return them cleaned.

    Secrets left out keep their stored value (when `existing` is given), but only while the endpoint's origin
    (scheme, host, port) stays the one they were saved with: a stored secret is never sent anywhere else. When the
    origin changes, each stored secret must be sent again in the same request; one left out is refused with a
    field error (`new_origin="refuse"`, saving) or left out of the result (`new_origin="drop"`, connection tests
    of unsaved settings, which use only the secrets they were given).
    """
    errors: dict[str, list[str]] = {}
    if kind not in CREDENTIAL_KINDS:
        raise ValidationError({"kind": [f"Choose one of: {', '.join(CREDENTIAL_KINDS)}."]})
    old_secrets = secrets_of(existing) if existing and existing.secrets_ciphertext else {}
    old_config = dict(existing.config) if existing else {}
    out: dict[str, Any] = {"kind": kind}
    name = data.get("name")
    if name is not None:
        name = str(name).strip()
        if not name or len(name) > 100:
            errors["name"] = ["Enter a name of 1–100 characters."]
        out["name"] = name

    kept: list[str] = []  # stored secrets carried over because the request left them out

    def text(field: str, max_len: int = 500) -> str:
        if field in data and data[field] is not None:
            value = data[field]
            if not isinstance(value, str) or len(value) > max_len:
                errors[field] = [f"Enter text of at most {max_len} characters."]
                return ""
            return value.strip()
        if field in SECRET_FIELDS:
            if old_secrets.get(field):
                kept.append(field)
            return old_secrets.get(field, "")
        if field == "base_url":
            return existing.base_url if existing else ""
        return old_config.get(field, "")

    api_key = text("api_key", 4000)
    base_url = text("base_url")
    secret_access_key = text("secret_access_key", 4000)
    config = {f: text(f, 200) for f in ("deployment", "api_version", "region", "access_key_id")}
    eu_hosted = data.get("eu_hosted", old_config.get("eu_hosted", False))
    if not isinstance(eu_hosted, bool):
        errors["eu_hosted"] = ["Must be true or false."]
    if "headers" not in data and old_secrets.get("headers"):
        kept.append("headers")
    headers = data.get("headers", old_secrets.get("headers") or {})
    if headers is None:
        headers = {}
    if (
        not isinstance(headers, dict)
        or len(headers) > 20
        or not all(
            isinstance(k, str)
            and _HEADER_NAME.match(k)
            and isinstance(v, str)
            and len(v) < 4000
            and v.isprintable()
            for k, v in headers.items()
        )
    ):
        errors["headers"] = ["Give extra headers as an object of up to 20 header names to text values."]
        headers = {}

    if kind == "ollama" and not base_url:
        base_url = OLLAMA_DEFAULT_URL
    if kind == "bedrock" and config["region"] and not base_url and _REGION.match(config["region"]):
        base_url = f"https://bedrock-runtime.{config['region']}.amazonaws.com"
    if existing is not None and kept and origin_of(base_url) != origin_of(existing.base_url):
        for field in kept:
            if new_origin == "drop":
                api_key = "" if field == "api_key" else api_key
                secret_access_key = "" if field == "secret_access_key" else secret_access_key
                headers = {} if field == "headers" else headers
            elif field not in errors:
                errors[field] = [
                    f"The endpoint's address (scheme, host or port) changed: enter {_SECRET_LABELS[field]} "
                    "again. A saved secret is only sent to the address it was saved for."
                ]
    required: list[str] = []
    if kind in ("openai_compatible", "ollama"):
        required = ["base_url"]
    elif kind == "azure_openai":
        required = ["base_url", "api_key", "deployment", "api_version"]
    elif kind == "bedrock":
        required = ["region", "access_key_id", "secret_access_key"]
    else:
        required = ["api_key"]
    values = {"api_key": api_key, "base_url": base_url, "secret_access_key": secret_access_key, **config}
    labels = {
        "api_key": "an API key",
        "base_url": "the endpoint's base URL",
        "deployment": "the deployment name",
        "api_version": "the API version (e.g. 2024-10-21)",
        "region": "the AWS region (e.g. eu-central-1)",
        "access_key_id": "the AWS access key id",
        "secret_access_key": "the AWS secret access key",
    }
    for field in required:
        if not values.get(field) and field not in errors:
            errors[field] = [f"Enter {labels[field]}; a {kind.replace('_', ' ')} endpoint needs it."]
    if (
        kind == "bedrock"
        and config["region"]
        and not _REGION.match(config["region"])
        and "region" not in errors
    ):
        errors["region"] = ["Enter an AWS region such as eu-central-1."]
    if (
        kind == "azure_openai"
        and config["api_version"]
        and not re.match(r"^\d{4}-\d{2}-\d{2}(-preview)?$", config["api_version"])
    ):
        errors["api_version"] = ["Enter an API version such as 2024-10-21."]
    if base_url and "base_url" not in errors:
        try:
            ssrf.check_url(base_url, use_cache=False)
        except ssrf.BlockedAddress as exc:
            errors["base_url"] = [str(exc)]
    if api_key and any(c.isspace() for c in api_key):
        errors["api_key"] = ["The API key contains spaces or line breaks; paste it again."]
    price_in = _decimal(
        data.get("input_usd_per_mtok", existing.input_usd_per_mtok if existing else 0),
        "input_usd_per_mtok",
        errors,
    )
    price_out = _decimal(
        data.get("output_usd_per_mtok", existing.output_usd_per_mtok if existing else 0),
        "output_usd_per_mtok",
        errors,
    )
    if errors:
        raise ValidationError(errors)
    if kind == "bedrock" and config["region"].startswith("eu-"):
        eu_hosted = True
    out.update(
        base_url=base_url,
        config={**{k: v for k, v in config.items() if v}, "eu_hosted": eu_hosted},
        secrets={
            k: v
            for k, v in (("api_key", api_key), ("secret_access_key", secret_access_key), ("headers", headers))
            if v
        },
        input_usd_per_mtok=price_in,
        output_usd_per_mtok=price_out,
    )
    return out


# --- services ----------------------------------------------------------------------------------------


def _store(credential: Credential, cleaned: dict[str, Any]) -> list[str]:
    """Copy cleaned values onto the credential, encrypting the secrets; returns the names of changed fields."""
    changed = []
    for name in ("base_url", "config", "input_usd_per_mtok", "output_usd_per_mtok"):
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


def credential_create(*, tenant: Tenant, actor: Actor, kind: str, data: dict[str, Any]) -> Credential:
    cleaned = clean_endpoint(kind, data)
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
            },
        )
    bump_config_version(tenant.id)
    return credential


def credential_update(
    *, credential: Credential, actor: Actor, data: dict[str, Any], new_origin: str = "refuse"
) -> Credential:
    """Change a credential; a new `api_key` rotates it (rotated_at), secrets left out are kept while the origin
    stays the same (see `clean_endpoint`)."""
    if "kind" in data and data["kind"] != credential.kind:
        raise ValidationError({"kind": ["The kind of a credential cannot change; create a new one."]})
    cleaned = clean_endpoint(credential.kind, data, existing=credential, new_origin=new_origin)
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
                changes={
                    name: getattr(credential, name, "[changed]")
                    if name in ("name", "base_url", "api_key_masked")
                    else "[changed]"
                    for name in changed
                },
            )
    if changed:
        bump_config_version(credential.tenant_id)
    return credential


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
            input_usd_per_mtok=float(credential.input_usd_per_mtok),
            output_usd_per_mtok=float(credential.output_usd_per_mtok),
        )
    return body
