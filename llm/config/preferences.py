"""LLM preferences: a tenant's default route (and optionally an Agent's): mode, model, params, fallbacks.

`preferences_save` validates everything before it writes anything, so a rejected save changes nothing;
the API and the pages both call it and show its field errors.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from llm.config import catalog, credentials
from llm.config.catalog_data import OPENROUTER, PLATFORM_DEFAULT_MODEL
from llm.config.versions import bump_config_version
from llm.models import Credential, Preferences
from tenants.audit import Actor, audit_record
from tenants.models import Agent, Tenant

MODES = ("platform", "byok", "custom")
CUSTOM_KINDS = ("openai_compatible", "azure_openai", "bedrock", "ollama")
DEFAULTS: dict[str, Any] = {
    "mode": "platform",
    "model": PLATFORM_DEFAULT_MODEL,
    "temperature": 0.7,
    "max_tokens": 4096,
    "eu_only": False,
    "fallbacks": [],
}
MAX_FALLBACKS = 5
MIN_TOKENS, MAX_TOKENS = 100, 128_000


def platform_mode_allowed(tenant: Tenant) -> tuple[bool, str]:
    """Whether the tenant may use the platform's keys: the installation allows it and so does its plan."""
    if not settings.PLATFORM_MANAGED_LLM_ENABLED:
        return False, "Platform-managed models are turned off on this installation; use your own key (BYOK)."
    from llm.policy import policy

    if not policy().platform_allowed(tenant):
        return False, (
            "Your plan does not include platform-managed models; upgrade the plan or use your own key (BYOK)."
        )
    return True, ""


def preferences_get(*, tenant: Tenant, agent: Agent | None) -> Preferences | None:
    """The saved row of exactly this scope (the agent's own, or the tenant's when agent is None)."""
    return (
        Preferences.objects.for_tenant(tenant)
        .select_related("credential", "custom_endpoint")
        .filter(agent=agent)
        .first()
    )


def preferences_effective(*, tenant: Tenant, agent: Agent | None) -> Preferences | None:
    """What applies: the agent's own preferences, else the tenant's."""
    if agent is not None:
        own = preferences_get(tenant=tenant, agent=agent)
        if own is not None:
            return own
    return preferences_get(tenant=tenant, agent=None)


# --- reading -----------------------------------------------------------------------------------------


def _endpoint_json(credential: Credential | None) -> dict[str, Any] | None:
    if credential is None:
        return None
    body = credentials.credential_json(credential)
    return {
        k: body.get(k)
        for k in (
            "id",
            "kind",
            "name",
            "base_url",
            "deployment",
            "api_version",
            "region",
            "access_key_id",
            "api_key_masked",
            "eu_hosted",
            "input_usd_per_mtok",
            "output_usd_per_mtok",
        )
    }


def _byok_credential(tenant: Tenant, prefs: Preferences | None, model: str) -> Credential | None:
    if prefs is not None and prefs.credential_id and prefs.credential is not None:
        return prefs.credential
    provider = model.split(":", 1)[0]
    return credentials.credential_for_kind(
        tenant_id=tenant.id, kind=provider
    ) or credentials.credential_for_kind(tenant_id=tenant.id, kind=OPENROUTER)


def preferences_read(*, tenant: Tenant, agent: Agent | None) -> dict[str, Any]:
    """The API shape: saved values (or the agent's inherited / the defaults) and the model's catalog metadata."""
    own = preferences_get(tenant=tenant, agent=agent)
    prefs = own or (preferences_get(tenant=tenant, agent=None) if agent is not None else None)
    values: dict[str, Any] = (
        dict(DEFAULTS)
        if prefs is None
        else {
            "mode": prefs.mode,
            "model": prefs.model,
            "temperature": float(prefs.temperature),
            "max_tokens": prefs.max_tokens,
            "eu_only": prefs.eu_only,
            "fallbacks": list(prefs.fallbacks or []),
        }
    )
    allowed, reason = platform_mode_allowed(tenant)
    byok = _byok_credential(tenant, prefs, values["model"]) if values["mode"] == "byok" else None
    return {
        "agent": agent.slug if agent is not None else None,
        "saved": own is not None,
        "inherited": agent is not None and own is None,
        **values,
        "eu_only": values["eu_only"] or tenant.eu_only,
        "tenant_eu_only": tenant.eu_only,
        "api_key_masked": byok.api_key_masked if byok is not None else None,
        "credential": (
            {"id": byok.pk, "kind": byok.kind, "name": byok.name, "api_key_masked": byok.api_key_masked}
            if byok is not None
            else None
        ),
        "custom_endpoint": _endpoint_json(prefs.custom_endpoint if prefs is not None else None),
        "model_info": catalog.model_json(values["model"]),
        "platform_mode_available": allowed,
        "platform_mode_reason": reason,
        "updated_at": prefs.updated_at if prefs is not None else None,
    }


# --- validation --------------------------------------------------------------------------------------


def _number(value: Any, *, integer: bool) -> Decimal | int | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    if integer:
        return int(number) if number == number.to_integral_value() else None
    return number


def check_params(
    data: dict[str, Any], errors: dict[str, list[str]], *, max_output: int | None = None, prefix: str = ""
) -> dict[str, Any]:
    """Validate temperature (0–2) and max_tokens (100–128000, at most the model's output limit)."""
    out: dict[str, Any] = {}
    if "temperature" in data and data["temperature"] is not None:
        t = _number(data["temperature"], integer=False)
        if t is None or not (0 <= t <= 2):
            errors[prefix + "temperature"] = ["Enter a temperature between 0 and 2."]
        else:
            out["temperature"] = float(t)
    if "max_tokens" in data and data["max_tokens"] is not None:
        n = _number(data["max_tokens"], integer=True)
        if n is None or not (MIN_TOKENS <= n <= MAX_TOKENS):
            errors[prefix + "max_tokens"] = [
                f"Enter a whole number of tokens from {MIN_TOKENS} to {MAX_TOKENS:,}."
            ]
        elif max_output and n > max_output:
            errors[prefix + "max_tokens"] = [
                f"The model writes at most {max_output:,} tokens per answer; enter {max_output:,} or less."
            ]
        else:
            out["max_tokens"] = int(n)
    return out


def check_model(
    model: Any, *, mode: str, eu_required: bool, field: str = "model"
) -> tuple[str, Any, list[str]]:
    """(model id, catalog entry or None, errors) for a model name under a mode."""
    if not isinstance(model, str) or not model.strip():
        return "", None, ["Choose a model."]
    model = model.strip()
    if len(model) > 200:
        return model, None, ["A model name has at most 200 characters."]
    snapshot = catalog.get_catalog()
    m = snapshot.model(model)
    if m is not None:
        if not m.enabled:
            return model, m, [f"The model {model} is disabled; choose another one."]
        if m.capabilities == ("embeddings",):
            return model, m, [f"{model} is an embedding model; choose a chat model."]
        if m.provider == "custom" and mode != "custom":
            return model, m, ["The custom placeholder needs custom mode."]
        if eu_required and not m.eu_hosted and mode != "custom":
            return (
                model,
                m,
                [
                    f"EU data residency is required and {model} is not EU-hosted; choose an EU-hosted "
                    "model (filter “eu”)."
                ],
            )
        return model, m, []
    if model.startswith("openrouter:"):
        slug = model.split(":", 1)[1]
        if "/" not in slug or slug.startswith("/") or slug.endswith("/"):
            return model, None, ["Write OpenRouter models as openrouter:vendor/model."]
        if mode == "custom":
            return model, None, ["OpenRouter models need platform or byok mode."]
        if eu_required:
            return (
                model,
                None,
                ["EU data residency is required and OpenRouter does not guarantee an EU region."],
            )
        return model, snapshot.by_openrouter_id(slug), []
    if model.startswith("ollama:"):
        if mode != "custom" or not model.split(":", 1)[1]:
            return model, None, ["Local models (ollama:name:size) need custom mode with an Ollama endpoint."]
        return model, None, []
    if mode == "custom":
        return model, None, []
    if ":" in model and model.split(":", 1)[0] in snapshot.providers:
        return model, None, [f"{model} is not in the catalog; choose one from GET /api/llm/models."]
    return model, None, [f"Unknown model “{model}”. Use a catalog id such as {PLATFORM_DEFAULT_MODEL}."]


def _has_key_for(model_id: str, m: Any, kinds: set[str]) -> bool:
    if model_id.startswith("openrouter:"):
        return OPENROUTER in kinds
    if m is None:
        return False
    return (m.provider in kinds and bool(m.native_model_id)) or (
        OPENROUTER in kinds and bool(m.openrouter_model_id)
    )


def _inline_key_kind(data: dict[str, Any], model_id: str, m: Any) -> str:
    kind = data.get("api_key_provider") or data.get("provider")
    if kind:
        return str(kind)
    key = str(data.get("api_key") or "")
    if key.startswith("sk-or-") or model_id.startswith("openrouter:"):
        return OPENROUTER
    if m is not None and m.native_model_id:
        return m.provider
    return OPENROUTER


def _validate(
    *,
    tenant: Tenant,
    current: dict[str, Any],
    existing: Preferences | None,
    data: dict[str, Any],
    new_origin: str = "refuse",
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """Return (values, inline byok key to store, custom endpoint to store) or raise ValidationError."""
    errors: dict[str, Any] = {}
    unknown = set(data) - {
        "mode",
        "model",
        "api_key",
        "api_key_provider",
        "provider",
        "custom_endpoint",
        "temperature",
        "max_tokens",
        "eu_only",
        "fallbacks",
        "credential",
    }
    for name in sorted(unknown):
        errors[name] = ["Unknown field."]
    values = dict(current)
    mode = data.get("mode", values["mode"])
    if mode not in MODES:
        errors["mode"] = [f"Choose one of: {', '.join(MODES)}."]
        mode = values["mode"]
    values["mode"] = mode
    if "eu_only" in data:
        if not isinstance(data["eu_only"], bool):
            errors["eu_only"] = ["Must be true or false."]
        else:
            values["eu_only"] = data["eu_only"]
    eu_required = bool(values["eu_only"] or tenant.eu_only)

    model_id, m, model_errors = check_model(
        data.get("model", values["model"]), mode=mode, eu_required=eu_required
    )
    if model_errors:
        errors["model"] = model_errors
    values["model"] = model_id
    values.update(
        check_params(
            {k: data.get(k, values[k]) for k in ("temperature", "max_tokens")},
            errors,
            max_output=m.max_output_tokens if m is not None else None,
        )
    )

    fallbacks = data.get("fallbacks", values["fallbacks"])
    if fallbacks is None:
        fallbacks = []
    fallback_entries: list[tuple[str, Any]] = []
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        errors["fallbacks"] = ["Give the fallbacks as a list of model ids."]
    elif len(fallbacks) > MAX_FALLBACKS:
        errors["fallbacks"] = [f"At most {MAX_FALLBACKS} fallbacks."]
    else:
        messages = []
        for name in fallbacks:
            fid, fm, ferrors = check_model(name, mode=mode, eu_required=eu_required)
            if fid == model_id:
                ferrors = ["A fallback cannot be the primary model."]
            if fid in [f for f, _ in fallback_entries]:
                ferrors = [f"{fid} is listed twice."]
            messages += [f"{name}: {e}" for e in ferrors]
            fallback_entries.append((fid, fm))
        if messages:
            errors["fallbacks"] = messages
        values["fallbacks"] = [f for f, _ in fallback_entries]

    inline_key = None
    endpoint: dict[str, Any] | None = None
    if mode == "platform":
        allowed, reason = platform_mode_allowed(tenant)
        if not allowed:
            errors["mode"] = [reason]
    elif mode == "byok":
        kinds = set(Credential.objects.for_tenant(tenant).values_list("kind", flat=True))
        if data.get("api_key"):
            kind = _inline_key_kind(data, model_id, m)
            if kind not in credentials.PROVIDER_KINDS:
                errors["api_key_provider"] = [f"Choose one of: {', '.join(credentials.PROVIDER_KINDS)}."]
            else:
                try:
                    existing_cred = credentials.credential_for_kind(tenant_id=tenant.id, kind=kind)
                    credentials.clean_endpoint(kind, {"api_key": data["api_key"]}, existing=existing_cred)
                    inline_key = {"kind": kind, "api_key": data["api_key"], "existing": existing_cred}
                    kinds.add(kind)
                except ValidationError as exc:
                    errors.update(_detail(exc))
        elif "api_key" in data and data["api_key"] not in (None, ""):
            errors["api_key"] = ["Enter the API key as text."]
        if "model" not in errors and not _has_key_for(model_id, m, kinds) and "api_key" not in errors:
            provider = m.provider if m is not None else OPENROUTER
            errors["api_key"] = [
                f"Add an API key for {provider}"
                + (" or OpenRouter" if provider != OPENROUTER else "")
                + " (field api_key), or save one first."
            ]
        if "fallbacks" not in errors:
            missing = [fid for fid, fm in fallback_entries if not _has_key_for(fid, fm, kinds)]
            if missing:
                errors["fallbacks"] = [
                    f"{fid}: no API key for its provider or OpenRouter is saved." for fid in missing
                ]
    elif mode == "custom":
        endpoint_data = data.get("custom_endpoint")
        saved = existing.custom_endpoint if existing is not None else None
        if endpoint_data is None and saved is None:
            errors["custom_endpoint"] = {
                "kind": [
                    f"Describe the endpoint: kind ({', '.join(CUSTOM_KINDS)}), base_url and its credentials."
                ]
            }
        elif endpoint_data is not None:
            if not isinstance(endpoint_data, dict):
                errors["custom_endpoint"] = {"non_field_errors": ["Send the endpoint as an object."]}
            else:
                kind = str(endpoint_data.get("kind") or (saved.kind if saved is not None else ""))
                if kind not in CUSTOM_KINDS:
                    errors["custom_endpoint"] = {"kind": [f"Choose one of: {', '.join(CUSTOM_KINDS)}."]}
                else:
                    same = saved if saved is not None and saved.kind == kind else None
                    fields = {k: v for k, v in endpoint_data.items() if k != "kind"}
                    try:
                        endpoint = {
                            "kind": kind,
                            "existing": same,
                            "cleaned": credentials.clean_endpoint(
                                kind, fields, existing=same, new_origin=new_origin
                            ),
                            "data": fields,
                        }
                    except ValidationError as exc:
                        errors["custom_endpoint"] = _detail(exc)
        if "custom_endpoint" not in errors and eu_required:
            eu = (
                endpoint["cleaned"]["config"].get("eu_hosted")
                if endpoint is not None
                else bool((saved.config or {}).get("eu_hosted"))
                if saved is not None
                else False
            )
            if not eu:
                errors["custom_endpoint"] = {
                    "eu_hosted": [
                        "EU data residency is required: mark the endpoint as EU-hosted (eu_hosted) if it is."
                    ]
                }
    if errors:
        raise credentials.ConfigValidationError(errors)
    return values, inline_key, endpoint


# --- saving ------------------------------------------------------------------------------------------


def preferences_save(
    *, tenant: Tenant, agent: Agent | None, actor: Actor, data: dict[str, Any], new_origin: str = "refuse"
) -> Preferences:
    """Validate and save (fields left out keep their current value); raise ValidationError with field errors.

    A custom endpoint moved to another origin needs its secrets again (`credentials.clean_endpoint`)."""
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["Send a JSON object."]})
    existing = preferences_get(tenant=tenant, agent=agent)
    base = (
        existing
        if existing is not None
        else (preferences_get(tenant=tenant, agent=None) if agent is not None else None)
    )
    current = (
        dict(DEFAULTS)
        if base is None
        else {
            "mode": base.mode,
            "model": base.model,
            "temperature": float(base.temperature),
            "max_tokens": base.max_tokens,
            "eu_only": base.eu_only,
            "fallbacks": list(base.fallbacks or []),
        }
    )
    values, inline_key, endpoint = _validate(
        tenant=tenant, current=current, existing=existing or base, data=data, new_origin=new_origin
    )
    with transaction.atomic():
        prefs = existing or Preferences(tenant=tenant, agent=agent)
        before = (
            {
                k: getattr(prefs, k)
                for k in ("mode", "model", "temperature", "max_tokens", "eu_only", "fallbacks")
            }
            if existing
            else {}
        )
        if inline_key is not None:
            if inline_key["existing"] is not None:
                cred = credentials.credential_update(
                    credential=inline_key["existing"], actor=actor, data={"api_key": inline_key["api_key"]}
                )
            else:
                cred = credentials.credential_create(
                    tenant=tenant,
                    actor=actor,
                    kind=inline_key["kind"],
                    data={"api_key": inline_key["api_key"]},
                )
            prefs.credential = cred
        if endpoint is not None:
            if endpoint["existing"] is not None:
                prefs.custom_endpoint = credentials.credential_update(
                    credential=endpoint["existing"], actor=actor, data=endpoint["data"], new_origin=new_origin
                )
            else:
                prefs.custom_endpoint = credentials.credential_create(
                    tenant=tenant, actor=actor, kind=endpoint["kind"], data=endpoint["data"]
                )
        elif existing is None and base is not None and values["mode"] == "custom":
            prefs.custom_endpoint = base.custom_endpoint  # an agent inheriting the tenant's endpoint
        for name in ("mode", "model", "max_tokens", "eu_only", "fallbacks"):
            setattr(prefs, name, values[name])
        prefs.temperature = Decimal(str(values["temperature"]))
        prefs.save()
        after = {
            k: getattr(prefs, k)
            for k in ("mode", "model", "temperature", "max_tokens", "eu_only", "fallbacks")
        }
        changes: dict[str, Any] = {
            k: [_plain(before.get(k)), _plain(v)] for k, v in after.items() if before.get(k) != v
        }
        if inline_key is not None and prefs.credential is not None:
            changes["api_key_masked"] = prefs.credential.api_key_masked
        audit_record(
            tenant=tenant,
            actor=actor,
            action="llm.preferences.save",
            obj=prefs,
            object_repr=f"LLM preferences ({agent.slug if agent else 'workspace default'})",
            changes=changes,
        )
    bump_config_version(tenant.id)
    return prefs


def _detail(exc: ValidationError) -> dict[str, Any]:
    return exc.detail if isinstance(exc, credentials.ConfigValidationError) else exc.message_dict


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def preferences_delete(*, tenant: Tenant, agent: Agent, actor: Actor) -> bool:
    """Drop an agent's own preferences so it follows the tenant's again."""
    prefs = preferences_get(tenant=tenant, agent=agent)
    if prefs is None:
        return False
    with transaction.atomic():
        audit_record(
            tenant=tenant,
            actor=actor,
            action="llm.preferences.delete",
            obj=prefs,
            object_repr=f"LLM preferences ({agent.slug})",
        )
        prefs.delete()
    bump_config_version(tenant.id)
    return True
