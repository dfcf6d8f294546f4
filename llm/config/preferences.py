"""LLM preferences: a tenant's default route (and optionally an Agent's): mode, model, params, fallbacks.

A body is validated by `llm.serializers.PreferencesWriteSerializer` (with the rules kept here: models, params,
keys) before `preferences_save` writes anything, so a rejected save changes nothing.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from llm.config import catalog, credentials
from llm.config.catalog_data import OPENROUTER, PLATFORM_DEFAULT_MODEL
from llm.config.versions import bump_config_version
from llm.models import Credential, Preferences
from llm.policy import ManagedAccess, policy
from tenants.audit import Actor, audit_record
from tenants.models import Agent, Tenant
from tenants.vocabulary import mode_label

MODES = ("platform", "byok", "custom")
CUSTOM_KINDS = ("openai_compatible", "azure_openai", "bedrock", "ollama")
DEFAULTS: dict[str, Any] = {
    "mode": "platform",
    "model": PLATFORM_DEFAULT_MODEL,
    "temperature": 0.7,
    "max_tokens": 4096,
    "eu_only": False,
    "fallbacks": [],
    "embedding_model": "",
}
MAX_FALLBACKS = 5
MIN_TOKENS, MAX_TOKENS = 100, 128_000


class PreferenceValues(TypedDict):
    mode: str
    model: str
    temperature: float
    max_tokens: int
    eu_only: bool
    fallbacks: list[str]
    embedding_model: str  # "" = the chat model's provider's embedding model (the workspace's, for an agent)


class CredentialChange(TypedDict):
    """A credential to create (`existing` None) or change along with the preferences."""

    kind: str
    existing: Credential | None
    credential: credentials.CredentialInput


class PreferencesInput(TypedDict):
    """Preferences as `llm.serializers.PreferencesWriteSerializer` validated them: complete values (what the body
    left out is the current value), and the byok key or custom endpoint to store with them."""

    values: PreferenceValues
    inline_key: CredentialChange | None
    endpoint: CredentialChange | None


PLATFORM_NOT_INCLUDED = (
    "Your workspace plan does not include platform-managed models. Turn on “Use managed LLM” on the agent's page "
    "(Starter, Pro or Ultra), or use your own provider key (BYOK) or a custom endpoint."
)


def not_configured_message(*, agent: bool = False) -> str:
    """What every surface says to a workspace (or an agent of it) that has no LLM yet: no saved preferences, no
    managed tier, and a plan without platform-managed models. With the page where an owner or admin sets one up."""
    url = settings.SITE_URL.rstrip("/") + reverse("llm_settings") + "?configure"
    whom = "this agent or its workspace" if agent else "this workspace"
    return (
        f"No LLM is configured for {whom} yet. An owner or admin can set one up (your own provider key, "
        f"your own endpoint, or managed LLM) in the LLM settings: {url}"
    )


def managed_access(tenant: Tenant, agent: Agent | None) -> ManagedAccess | None:
    """The managed tier of an agent (None: the workspace's default agent), or None when it has none."""
    return policy().managed_access(tenant.id, agent.id if agent is not None else None)


def platform_mode_allowed(tenant: Tenant, agent: Agent | None = None) -> tuple[bool, str]:
    """Whether calls of the agent (None: the workspace's default agent) may use the platform's keys: the
    installation allows it, and the agent is on a managed tier that is not paused or the workspace plan includes
    platform-managed models."""
    if not settings.PLATFORM_MANAGED_LLM_ENABLED:
        return False, "Platform-managed models are turned off on this installation; use your own key (BYOK)."
    access = managed_access(tenant, agent)
    if access is not None:
        return not access.blocked_reason, access.blocked_reason
    if not policy().platform_allowed(tenant):
        return False, PLATFORM_NOT_INCLUDED
    return True, ""


def llm_configured(*, tenant: Tenant, agent: Agent | None = None) -> bool:
    """Whether the agent (None: the workspace) has something to call with: saved preferences (its own or the
    workspace's), or the platform's keys through a managed tier or the plan."""
    _, prefs = preferences_scope(tenant=tenant, agent=agent)
    return prefs is not None or platform_mode_allowed(tenant, agent)[0]


def follows_tier(agent: Agent | int | None, own: Preferences | None, access: ManagedAccess | None) -> bool:
    """Whether an agent calls on its managed tier (platform mode) although the preferences that apply to it say
    another mode: an agent on a tier without preferences of its own does, since turning managed LLM on is what
    it asked for, while the workspace's preferences (the default agent's own) are followed as they are."""
    return agent is not None and own is None and access is not None


def tier_values(values: PreferenceValues, access: ManagedAccess) -> PreferenceValues:
    """Preferences as a managed agent that follows its tier applies them: platform mode, the tier's first model
    unless the preferences name one of the tier's, and the fallbacks of the tier among theirs."""
    models = access.models
    applied = values.copy()
    applied["mode"] = "platform"
    applied["model"] = values["model"] if values["model"] in models or not models else models[0]
    applied["fallbacks"] = [f for f in values["fallbacks"] if f in models and f != applied["model"]]
    applied["embedding_model"] = values["embedding_model"] if values["embedding_model"] in models else ""
    return applied


def platform_scopes(tenant: Tenant) -> tuple[list[ManagedAccess | None], str]:
    """The ways the workspace's calls may reach the platform's keys (what a route's platform-mode target is checked
    against, since any agent may call a route): the managed tier of each of its agents (the default agent's too)
    that is not paused, and None (any model) when its plan includes platform-managed models. With none, the
    reason."""
    if not settings.PLATFORM_MANAGED_LLM_ENABLED:
        return [], "Platform-managed models are turned off on this installation; use your own key (BYOK)."
    scopes: list[ManagedAccess | None] = [None] if policy().platform_allowed(tenant) else []
    paused = ""
    for agent in [None, *Agent.objects.for_tenant(tenant).filter(is_active=True)]:
        access = managed_access(tenant, agent)
        if access is not None and access.blocked_reason:
            paused = paused or access.blocked_reason
        elif access is not None and access not in scopes:
            scopes.append(access)
    return scopes, paused or PLATFORM_NOT_INCLUDED


def tier_refusal(access: ManagedAccess | None, model_id: str, name: str = "") -> str | None:
    """Why a managed agent may not call a model on the platform's keys (None: it may, or it is not managed): its
    tier does not list it. The message names the tiers that do, in the words customers see."""
    if access is None or model_id in access.models:
        return None
    shown = name or model_id
    others = [t for t in policy().tiers_allowing(model_id) if t != access.name]
    if not others:
        return f"{shown} is not in {access.name}, and no managed tier includes it; use your own key (BYOK) for it."
    names = others[0] if len(others) == 1 else ", ".join(others[:-1]) + " and " + others[-1]
    return f"{shown} is not in {access.name}; {names} {'includes' if len(others) == 1 else 'include'} it."


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
            *credentials.PRICE_FIELDS,
        )
    }


def _byok_credential(tenant: Tenant, prefs: Preferences | None, model: str) -> Credential | None:
    if prefs is not None and prefs.credential_id and prefs.credential is not None:
        return prefs.credential
    provider = model.split(":", 1)[0]
    return credentials.credential_for_kind(
        tenant_id=tenant.id, kind=provider
    ) or credentials.credential_for_kind(tenant_id=tenant.id, kind=OPENROUTER)


def saved_provider_keys(tenant: Tenant, prefs: Preferences | None) -> dict[str, str]:
    """Per provider (and OpenRouter), the masked key a BYOK call would use: the one the preferences saved with
    them, else the newest of that provider (the router's own choice), whatever mode is saved now."""
    rows = list(Credential.objects.for_tenant(tenant).filter(kind__in=credentials.PROVIDER_KINDS))
    chosen: dict[str, Credential] = {}
    for c in sorted(rows, key=lambda c: (c.rotated_at or c.created_at, c.created_at, c.pk)):
        chosen[c.kind] = c  # the newest last
    pinned = next((c for c in rows if prefs is not None and c.pk == prefs.credential_id), None)
    if pinned is not None:
        chosen[pinned.kind] = pinned
    return {kind: c.api_key_masked for kind, c in chosen.items() if c.api_key_masked}


def preferences_read(*, tenant: Tenant, agent: Agent | None) -> dict[str, Any]:
    """The API shape: saved values (or the agent's inherited / the defaults) and the model's catalog metadata."""
    own, prefs = preferences_scope(tenant=tenant, agent=agent)
    values = values_of(prefs)
    access = managed_access(tenant, agent)
    if access is not None and follows_tier(agent, own, access):
        values = tier_values(values, access)
    allowed, reason = platform_mode_allowed(tenant, agent)
    byok = _byok_credential(tenant, prefs, values["model"]) if values["mode"] == "byok" else None
    return {
        "agent": agent.slug if agent is not None else None,
        "saved": own is not None,
        # Something to call with: saved preferences (the agent's or the workspace's), or the platform's keys
        # through a managed tier or the plan. Without, every page says "not configured" and links the modal.
        "configured": prefs is not None or allowed,
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
        "saved_keys": saved_provider_keys(tenant, prefs),
        "custom_endpoint": _endpoint_json(prefs.custom_endpoint if prefs is not None else None),
        "model_info": catalog.model_json(values["model"]),
        "platform_mode_available": allowed,
        "platform_mode_reason": reason,
        "updated_at": prefs.updated_at if prefs is not None else None,
    }


# --- rules the serializers apply (llm.serializers: PreferencesWriteSerializer, RouteTargetSerializer) ------


TEMPERATURE_ERROR = "Enter a temperature between 0 and 2."
MAX_TOKENS_ERROR = f"Enter a whole number of tokens from {MIN_TOKENS} to {MAX_TOKENS:,}."


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


def parse_temperature(value: Any) -> float | None:
    """A temperature from 0 to 2 (a number or its text), else None."""
    t = _number(value, integer=False)
    return float(t) if t is not None and 0 <= t <= 2 else None


def parse_max_tokens(value: Any) -> int | None:
    """A whole number of tokens from MIN_TOKENS to MAX_TOKENS (1000.0 and "1000" count), else None."""
    n = _number(value, integer=True)
    return int(n) if n is not None and MIN_TOKENS <= n <= MAX_TOKENS else None


def max_output_error(max_tokens: int, max_output: int | None) -> str | None:
    """The message when max_tokens is more than the model writes per answer."""
    if max_output and max_tokens > max_output:
        return f"The model writes at most {max_output:,} tokens per answer; enter {max_output:,} or less."
    return None


def check_params(
    data: dict[str, Any], errors: dict[str, list[str]], *, max_output: int | None = None, prefix: str = ""
) -> dict[str, Any]:
    """Validate temperature (0–2) and max_tokens (100–128000, at most the model's output limit)."""
    out: dict[str, Any] = {}
    if data.get("temperature") is not None:
        temperature = parse_temperature(data["temperature"])
        if temperature is None:
            errors[prefix + "temperature"] = [TEMPERATURE_ERROR]
        else:
            out["temperature"] = temperature
    if data.get("max_tokens") is not None:
        n = parse_max_tokens(data["max_tokens"])
        too_many = max_output_error(n, max_output) if n is not None else None
        if n is None or too_many:
            errors[prefix + "max_tokens"] = [too_many or MAX_TOKENS_ERROR]
        else:
            out["max_tokens"] = n
    return out


def check_model(model: Any, *, mode: str, eu_required: bool) -> tuple[str, Any, list[str]]:
    """(model id, catalog entry or None, errors) for a model name under a mode."""
    if not isinstance(model, str) or not model.strip():
        return "", None, ["Choose a model."]
    model = model.strip()
    if len(model) > 200:
        return model, None, ["A model name has at most 200 characters."]
    snapshot = catalog.get_catalog()
    m = snapshot.model(model)
    if m is not None:
        return model, m, _catalog_model_errors(model, m, mode=mode, eu_required=eu_required)
    if model.startswith("openrouter:"):
        return _openrouter_model(model, snapshot, mode=mode, eu_required=eu_required)
    return model, None, _uncatalogued_model_errors(model, snapshot, mode=mode)


def check_embedding_model(model: Any, *, mode: str, eu_required: bool) -> tuple[str, Any, list[str]]:
    """(model id, catalog entry or None, errors) for the embedding model of `default` ("" = none chosen): a catalog
    model that embeds in platform and byok mode; in custom mode also a name the endpoint knows."""
    if model is None or (isinstance(model, str) and not model.strip()):
        return "", None, []
    if not isinstance(model, str):
        return "", None, ["Enter a model id as text (empty = none)."]
    model = model.strip()
    if len(model) > 200:
        return model, None, ["A model name has at most 200 characters."]
    m = catalog.get_catalog().model(model)
    if m is None:
        if mode == "custom" and not model.startswith("openrouter:"):
            return model, None, []  # the name the tenant's own endpoint knows (or ollama:name:size)
        return model, None, [f"{model} is not an embedding model of the catalog (GET /api/llm/models)."]
    if "embeddings" not in m.capabilities:
        return (
            model,
            m,
            [f"{model} is a chat model; choose an embedding model such as openai:text-embedding-3-small."],
        )
    if not m.enabled:
        return model, m, [f"The model {model} is disabled; choose another one."]
    if m.input_usd_per_mtok is None:
        return (
            model,
            m,
            [f"{model} has no price in the catalog, so its calls cannot be metered; choose another model."],
        )
    if eu_required and not m.eu_hosted:
        return (
            model,
            m,
            [f"EU data residency is required and {model} is not EU-hosted; choose an EU-hosted model."],
        )
    return model, m, []


def _catalog_model_errors(model: str, m: Any, *, mode: str, eu_required: bool) -> list[str]:
    if not m.enabled:
        return [f"The model {model} is disabled; choose another one."]
    if m.capabilities == ("embeddings",):
        return [f"{model} is an embedding model; choose a chat model."]
    if m.provider == "custom" and mode != "custom":
        return ["The custom placeholder needs custom mode."]
    if mode != "custom" and (m.input_usd_per_mtok is None or m.output_usd_per_mtok is None):
        # Custom mode prices calls at the endpoint's prices; the catalog's are needed on every other way.
        return [f"{model} has no price in the catalog, so its calls cannot be metered; choose another model."]
    if eu_required and not m.eu_hosted and mode != "custom":
        return [
            f"EU data residency is required and {model} is not EU-hosted; choose an EU-hosted "
            "model (filter “eu”)."
        ]
    return []


def _openrouter_model(
    model: str, snapshot: Any, *, mode: str, eu_required: bool
) -> tuple[str, Any, list[str]]:
    slug = model.split(":", 1)[1]
    if "/" not in slug or slug.startswith("/") or slug.endswith("/"):
        return model, None, ["Write OpenRouter models as openrouter:vendor/model."]
    if mode == "custom":
        return model, None, ["OpenRouter models need platform or byok mode."]
    if eu_required:
        return model, None, ["EU data residency is required and OpenRouter does not guarantee an EU region."]
    return model, snapshot.by_openrouter_id(slug), []


def custom_only_message(model: str, mode: str) -> str:
    """Why a `custom:` model is refused or skipped outside custom mode (the router's words and the checks')."""
    return (
        f"{model} is a model of the workspace's own endpoint, which only the “{mode_label('custom')}” mode uses "
        f"(the LLM settings are on “{mode_label(mode)}” now): switch to that mode, or use a model this mode reaches."
    )


def _uncatalogued_model_errors(model: str, snapshot: Any, *, mode: str) -> list[str]:
    if model.startswith("custom:") and mode != "custom":
        return [custom_only_message(model, mode)]
    if model.startswith("ollama:"):
        if mode != "custom" or not model.split(":", 1)[1]:
            return ["Local models (ollama:name:size) need custom mode with an Ollama endpoint."]
        return []
    if mode == "custom":
        return []
    if ":" in model and model.split(":", 1)[0] in snapshot.providers:
        return [f"{model} is not in the catalog; choose one from GET /api/llm/models."]
    return [f"Unknown model “{model}”. Use a catalog id such as {PLATFORM_DEFAULT_MODEL}."]


def has_key_for(model_id: str, m: Any, kinds: set[str]) -> bool:
    """Whether a byok call of the model finds a key among the credential kinds (its provider's or OpenRouter's)."""
    if model_id.startswith("openrouter:"):
        return OPENROUTER in kinds
    if m is None:
        return False
    return (m.provider in kinds and bool(m.native_model_id)) or (
        OPENROUTER in kinds and bool(m.openrouter_model_id)
    )


def inline_key_kind(*, provider: Any, api_key: str, model_id: str, m: Any) -> str:
    """Whose key an inline byok `api_key` is: as named, else inferred from the key and the model."""
    if provider:
        return str(provider)
    if api_key.startswith("sk-or-") or model_id.startswith("openrouter:"):
        return OPENROUTER
    if m is not None and m.native_model_id:
        return m.provider
    return OPENROUTER


# --- saving ------------------------------------------------------------------------------------------


def preferences_scope(
    *, tenant: Tenant, agent: Agent | None
) -> tuple[Preferences | None, Preferences | None]:
    """(the saved row of this scope, the row that applies to it): an agent without its own follows the tenant's."""
    existing = preferences_get(tenant=tenant, agent=agent)
    if existing is not None or agent is None:
        return existing, existing
    return None, preferences_get(tenant=tenant, agent=None)


def values_of(prefs: Preferences | None) -> PreferenceValues:
    """The values of a saved row (the defaults when there is none)."""
    if prefs is None:
        return PreferenceValues(
            mode=DEFAULTS["mode"],
            model=DEFAULTS["model"],
            temperature=DEFAULTS["temperature"],
            max_tokens=DEFAULTS["max_tokens"],
            eu_only=DEFAULTS["eu_only"],
            fallbacks=list(DEFAULTS["fallbacks"]),
            embedding_model=DEFAULTS["embedding_model"],
        )
    return PreferenceValues(
        mode=prefs.mode,
        model=prefs.model,
        temperature=float(prefs.temperature),
        max_tokens=prefs.max_tokens,
        eu_only=prefs.eu_only,
        fallbacks=list(prefs.fallbacks or []),
        embedding_model=prefs.embedding_model,
    )


def _save_credential(*, tenant: Tenant, actor: Actor, change: CredentialChange) -> Credential:
    if change["existing"] is not None:
        return credentials.credential_update(
            credential=change["existing"], actor=actor, data=change["credential"]
        )
    return credentials.credential_create(tenant=tenant, actor=actor, data=change["credential"])


def preferences_save(
    *, tenant: Tenant, agent: Agent | None, actor: Actor, data: PreferencesInput
) -> Preferences:
    """Save preferences validated by `llm.serializers.PreferencesWriteSerializer` (with the same tenant and agent
    in its context), with the inline key and custom endpoint they carry, in one transaction."""
    existing, base = preferences_scope(tenant=tenant, agent=agent)
    values, inline_key, endpoint = data["values"], data["inline_key"], data["endpoint"]
    fields = ("mode", "model", "temperature", "max_tokens", "eu_only", "fallbacks", "embedding_model")
    with transaction.atomic():
        prefs = existing or Preferences(tenant=tenant, agent=agent)
        before = {k: getattr(prefs, k) for k in fields} if existing else {}
        if inline_key is not None:
            prefs.credential = _save_credential(tenant=tenant, actor=actor, change=inline_key)
        if endpoint is not None:
            prefs.custom_endpoint = _save_credential(tenant=tenant, actor=actor, change=endpoint)
        elif existing is None and base is not None and values["mode"] == "custom":
            prefs.custom_endpoint = base.custom_endpoint  # an agent inheriting the tenant's endpoint
        prefs.mode, prefs.model = values["mode"], values["model"]
        prefs.max_tokens, prefs.eu_only, prefs.fallbacks = (
            values["max_tokens"],
            values["eu_only"],
            values["fallbacks"],
        )
        prefs.temperature = Decimal(str(values["temperature"]))
        prefs.embedding_model = values["embedding_model"]
        prefs.save()
        after = {k: getattr(prefs, k) for k in fields}
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
