"""Route resolution for the router: a requested model name → the ordered targets (endpoint, key, price) to try.

Reads the catalog, the tenant's preferences, routes and credentials once, then serves warm calls from an
in-process cache keyed by the tenant's config version and the agent's managed tier, so a warm call runs no query
at all. Every target it returns can be priced: a target without a price is refused (a fallback is skipped), except
an OpenRouter model outside the catalog, which is metered at the cost OpenRouter reports for the call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

from llm.config import catalog, catalog_data, ssrf
from llm.config.catalog_data import OPENROUTER, PLATFORM_DEFAULT_MODEL
from llm.config.credentials import ENDPOINT_KINDS, protocol_for_kind, secrets_of
from llm.config.preferences import (
    PLATFORM_NOT_INCLUDED,
    custom_only_message,
    follows_tier,
    not_configured_message,
    tier_refusal,
)
from llm.config.versions import config_version, forget_version_memo
from llm.models import Credential, Preferences, Route
from llm.policy import ManagedAccess, policy
from tenants.models import Tenant

if TYPE_CHECKING:
    from typing import Unpack

    from django.db.models import Q

    from llm.config.catalog import ModelInfo
    from llm.jsontypes import JSONObject
    from llm.models import CatalogModel
    from llm.policy import Limits
    from llm.providers.base import TargetOptions

log = logging.getLogger(__name__)

_lock = threading.Lock()
# (tenant, agent, requested model, embeddings, managed tier, config version) → the resolved route
_routes: OrderedDict[tuple[int, int | None, str, bool, ManagedAccess | None, str], ResolvedRoute] = (
    OrderedDict()
)


# --- the router's view of a route -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    model_id: str
    provider: str
    protocol: str
    base_url: str
    api_key: str = field(repr=False)
    upstream_model: str
    options: TargetOptions = field(repr=False)
    mode: str
    credential_id: int | None
    input_usd_per_mtok: Decimal | None
    output_usd_per_mtok: Decimal | None
    eu_hosted: bool
    tier: str
    max_output_tokens: int | None
    capabilities: tuple[str, ...]
    weight: int = 0
    # the route's defaults (temperature, max_tokens), then a route target's own
    params: JSONObject = field(default_factory=dict)
    # Metered at the cost the provider reports for the call (OpenRouter's usage accounting): an OpenRouter model
    # outside the catalog. Its prices above are then the conservative ones (`Catalog.highest_prices`), used to
    # reserve the worst case at admission and to meter a call whose answer reports no cost.
    cost_reported: bool = False
    context_length: int | None = None  # the model's context window in tokens, where the catalog knows it
    # The prompt cache's prices (the catalog's, or a tenant's endpoint's own); None: the input price.
    cache_read_usd_per_mtok: Decimal | None = None
    cache_write_usd_per_mtok: Decimal | None = None

    @property
    def priced(self) -> bool:
        """Whether a call to it can be metered: the tenant's own endpoints carry their prices (0 when none is
        set), the platform's and the tenant's provider keys need the catalog's, or the provider's reported cost."""
        return self.input_usd_per_mtok is not None and self.output_usd_per_mtok is not None


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    name: str
    targets: tuple[ResolvedTarget, ...]
    weighted: bool
    cache_ttl: int | None
    eu_only: bool
    fallback_on: frozenset[str] = frozenset()  # opt-in failures that fall back too (Route.fallback_on)


class RouteError(Exception):
    """The requested model cannot be resolved; the gateway answers 400 invalid_request_error. Its message is
    shown to the tenant: operator details (which environment variable is missing) go to the log instead."""

    def __init__(self, message: str, code: str = "model_not_found", param: str = "model"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


# --- platform keys from the environment ----------------------------------------------------------------

_ENV_TTL = 5.0
_env_memo: dict[str, tuple[float, str]] = {}


def env(name: str) -> str:
    """An environment variable, re-read every few seconds (platform keys can change without a restart)."""
    now = time.monotonic()
    memo = _env_memo.get(name)
    if memo and memo[0] > now:
        return memo[1]
    value = os.environ.get(name, "").strip()
    _env_memo[name] = (now + _ENV_TTL, value)
    return value


def forget_env() -> None:
    _env_memo.clear()


def _env_prefix(provider: str) -> str:
    return provider.upper().replace("-", "_")


def _provider_defaults(provider: str) -> tuple[str, str]:
    """(protocol, default base URL) of a provider, whether or not the catalog has a model of it."""
    info = catalog.get_catalog().providers.get(provider)
    if info is not None:
        return info.protocol, info.default_base_url
    for p in catalog_data.PROVIDERS:
        if p["id"] == provider:
            return p["protocol"], p["default_base_url"]
    return "openai_compat", ""


def _base_url(provider: str, override: str = "") -> str:
    return override or env(f"{_env_prefix(provider)}_BASE_URL") or _provider_defaults(provider)[1]


def _catalog_target(
    m: ModelInfo,
    *,
    mode: str,
    provider: str,
    protocol: str,
    base_url: str,
    api_key: str,
    upstream: str,
    credential_id: int | None,
    options: TargetOptions | None = None,
    eu_hosted: bool | None = None,
) -> ResolvedTarget:
    return ResolvedTarget(
        model_id=m.id,
        provider=provider,
        protocol=protocol,
        base_url=base_url,
        api_key=api_key,
        upstream_model=upstream,
        options=options or {},
        mode=mode,
        credential_id=credential_id,
        input_usd_per_mtok=m.input_usd_per_mtok,
        output_usd_per_mtok=m.output_usd_per_mtok,
        eu_hosted=m.eu_hosted if eu_hosted is None else eu_hosted,
        tier=m.tier,
        max_output_tokens=m.max_output_tokens,
        capabilities=tuple(m.capabilities),
        context_length=m.context_length,
        cache_read_usd_per_mtok=m.cache_read_usd_per_mtok,
        cache_write_usd_per_mtok=m.cache_write_usd_per_mtok,
    )


def platform_target_for(model: str | ModelInfo | CatalogModel) -> ResolvedTarget | None:
    """The platform's own way to reach a catalog model (its provider's key, else OpenRouter's), or None."""
    snapshot = catalog.get_catalog()
    if isinstance(model, str):
        m = snapshot.model(model)
    elif isinstance(model, catalog.ModelInfo):
        m = model
    else:  # a CatalogModel row
        m = snapshot.model(model.pk)
    if m is None:
        return None
    key = env(f"{_env_prefix(m.provider)}_API_KEY")
    if key and m.native_model_id:
        protocol, _ = _provider_defaults(m.provider)
        return _catalog_target(
            m,
            mode="platform",
            provider=m.provider,
            protocol=protocol,
            base_url=_base_url(m.provider),
            api_key=key,
            upstream=m.native_model_id,
            credential_id=None,
        )
    key = env("OPENROUTER_API_KEY")
    if key and m.openrouter_model_id:
        return _catalog_target(
            m,
            mode="platform",
            provider=OPENROUTER,
            protocol="openai_compat",
            base_url=_base_url(OPENROUTER),
            api_key=key,
            upstream=m.openrouter_model_id,
            credential_id=None,
            eu_hosted=False,
        )
    return None


# --- cold resolution --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    """Everything a cold resolution reads, loaded once."""

    tenant: Tenant
    prefs: Preferences | None  # the effective row: the agent's, else the tenant's
    credentials: list[Credential]
    eu_only: bool
    access: ManagedAccess | None  # the agent's managed tier: its platform-mode calls reach only its models
    mode: str  # the preferences' mode (platform without any, or for a managed agent without its own)
    embedding_model: str = (
        ""  # what `default` embeds with: the effective row's, else the workspace's ("" = none)
    )
    # No preferences, no managed tier and no plan with platform-managed models: nothing to call with on the
    # platform's keys, so a platform-mode target says "not configured" (not which model the defaults name).
    unconfigured: bool = False
    agent_id: int | None = None

    def credential(self, kind: str) -> Credential | None:
        found = [c for c in self.credentials if c.kind == kind]
        if self.prefs is not None and self.prefs.credential_id:
            chosen = [c for c in found if c.pk == self.prefs.credential_id]
            if chosen:
                return chosen[0]
        found.sort(key=lambda c: (c.rotated_at or c.created_at, c.created_at, c.pk), reverse=True)
        return found[0] if found else None

    def credential_by_id(self, pk: int | None) -> Credential | None:
        return next((c for c in self.credentials if c.pk == pk), None)

    @property
    def custom_endpoint(self) -> Credential | None:
        return self.credential_by_id(self.prefs.custom_endpoint_id) if self.prefs is not None else None


def _load_context(tenant_id: int, agent_id: int | None, access: ManagedAccess | None) -> _Context:
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise RouteError("Unknown workspace.", code="tenant_not_found")
    rows = list(Preferences.objects.for_tenant(tenant_id).filter(models_q_agent(agent_id)))
    own = next((p for p in rows if agent_id is not None and p.agent_id == agent_id), None)
    prefs = own or next((p for p in rows if p.agent_id is None), None)
    credentials = list(Credential.objects.for_tenant(tenant_id).select_related("data_key"))
    eu_only = bool(tenant.eu_only or (prefs is not None and prefs.eu_only))
    workspace = next((p for p in rows if p.agent_id is None), None)
    unconfigured = prefs is None and access is None and not _platform_allowed(tenant)
    return _Context(
        tenant=tenant,
        prefs=prefs,
        credentials=credentials,
        eu_only=eu_only,
        access=access,
        mode=("platform" if prefs is None or follows_tier(agent_id, own, access) else prefs.mode),
        embedding_model=(prefs.embedding_model if prefs is not None else "")
        or (workspace.embedding_model if workspace is not None else ""),
        unconfigured=unconfigured,
        agent_id=agent_id,
    )


def _platform_allowed(tenant: Tenant) -> bool:
    from django.conf import settings

    return bool(settings.PLATFORM_MANAGED_LLM_ENABLED) and policy().platform_allowed(tenant)


def _check_configured(ctx: _Context) -> None:
    if ctx.unconfigured:
        raise RouteError(not_configured_message(agent=ctx.agent_id is not None), code="llm_not_configured")


def models_q_agent(agent_id: int | None) -> Q:
    from django.db.models import Q

    return Q(agent__isnull=True) | Q(agent_id=agent_id) if agent_id is not None else Q(agent__isnull=True)


def _secrets(credential: Credential) -> JSONObject:
    return secrets_of(credential)


def _check_endpoint(url: str) -> None:
    try:
        ssrf.check_url(url)
    except ssrf.BlockedAddress as exc:
        raise RouteError(f"The endpoint cannot be called: {exc}", code="endpoint_blocked") from None


def _endpoint_target(
    credential: Credential, *, model_id: str, upstream: str, catalog_model: ModelInfo | None = None
) -> ResolvedTarget:
    """A target on a tenant's own endpoint (custom mode, Ollama)."""
    secrets = _secrets(credential)
    config = credential.config or {}
    _check_endpoint(credential.base_url)
    options: TargetOptions = {}
    if credential.kind == "azure_openai":
        options = {"deployment": config.get("deployment", ""), "api_version": config.get("api_version", "")}
    elif credential.kind == "bedrock":
        options = {
            "region": config.get("region", ""),
            "access_key_id": config.get("access_key_id", ""),
            "secret_access_key": secrets.get("secret_access_key", ""),
        }
    if secrets.get("headers"):
        options["headers"] = dict(secrets["headers"])
    return ResolvedTarget(
        model_id=model_id,
        provider=credential.kind,
        protocol=protocol_for_kind(credential.kind),
        base_url=credential.base_url,
        api_key=secrets.get("api_key", ""),
        upstream_model=upstream,
        options=options,
        mode="custom",
        credential_id=credential.pk,
        input_usd_per_mtok=credential.input_usd_per_mtok,
        output_usd_per_mtok=credential.output_usd_per_mtok,
        cache_read_usd_per_mtok=credential.cache_read_usd_per_mtok,
        cache_write_usd_per_mtok=credential.cache_write_usd_per_mtok,
        eu_hosted=bool(config.get("eu_hosted")),
        tier=catalog_model.tier if catalog_model else "",
        max_output_tokens=catalog_model.max_output_tokens if catalog_model else None,
        capabilities=tuple(catalog_model.capabilities) if catalog_model else (),
    )


def _provider_credential_target(
    m: ModelInfo, credential: Credential, *, via_openrouter: bool
) -> ResolvedTarget:
    secrets = _secrets(credential)
    options: TargetOptions = {"headers": dict(secrets["headers"])} if secrets.get("headers") else {}
    if credential.base_url:
        _check_endpoint(credential.base_url)
    if via_openrouter:
        return _catalog_target(
            m,
            mode="byok",
            provider=OPENROUTER,
            protocol="openai_compat",
            base_url=_base_url(OPENROUTER, credential.base_url),
            api_key=secrets.get("api_key", ""),
            upstream=m.openrouter_model_id,
            credential_id=credential.pk,
            options=options,
            eu_hosted=False,
        )
    protocol, _ = _provider_defaults(m.provider)
    return _catalog_target(
        m,
        mode="byok",
        provider=m.provider,
        protocol=protocol,
        base_url=_base_url(m.provider, credential.base_url),
        api_key=secrets.get("api_key", ""),
        upstream=m.native_model_id,
        credential_id=credential.pk,
        options=options,
    )


def _target_for_catalog(
    ctx: _Context, m: ModelInfo, *, credential: Credential | None = None
) -> ResolvedTarget:
    if not m.enabled:
        raise RouteError(f"The model {m.id} is disabled in the catalog; pick another one.")
    if credential is not None:  # a route target naming its credential
        if credential.kind in ENDPOINT_KINDS:
            return _endpoint_target(
                credential,
                model_id=m.id,
                upstream=m.native_model_id or m.id.split(":", 1)[1],
                catalog_model=m,
            )
        if credential.kind == OPENROUTER and m.openrouter_model_id:
            return _provider_credential_target(m, credential, via_openrouter=True)
        if credential.kind == m.provider and m.native_model_id:
            return _provider_credential_target(m, credential, via_openrouter=False)
        raise RouteError(
            f"The credential “{credential.name}” cannot reach {m.id}.", code="credential_mismatch"
        )
    mode = ctx.mode
    if mode == "custom":
        endpoint = ctx.custom_endpoint
        if endpoint is None:
            raise RouteError(
                "Custom mode is selected but no custom endpoint is saved.", code="credential_missing"
            )
        return _endpoint_target(
            endpoint, model_id=m.id, upstream=m.native_model_id or m.id.split(":", 1)[1], catalog_model=m
        )
    if mode == "byok":
        own = ctx.credential(m.provider)
        if own is not None and m.native_model_id:
            return _provider_credential_target(m, own, via_openrouter=False)
        router = ctx.credential(OPENROUTER)
        if router is not None and m.openrouter_model_id:
            return _provider_credential_target(m, router, via_openrouter=True)
        raise RouteError(
            f"No API key for {m.provider} (or OpenRouter) is saved, so {m.id} cannot be called; "
            "add one in the LLM settings.",
            code="credential_missing",
        )
    _check_configured(ctx)
    _platform_enabled()
    _check_tier(ctx, m.id, m.name)
    target = platform_target_for(m)
    if target is None:
        log.warning(
            "platform model %s unreachable: neither %s_API_KEY nor OPENROUTER_API_KEY is set",
            m.id,
            _env_prefix(m.provider),
        )
        raise RouteError(
            f"{m.id} is not available on this platform right now; pick another model or use your own key "
            "(BYOK).",
            code="model_unavailable",
        )
    return target


def _check_tier(ctx: _Context, model_id: str, name: str = "") -> None:
    """A managed agent's platform-mode calls go only to its tier's models."""
    refusal = tier_refusal(ctx.access, model_id, name)
    if refusal is not None:
        raise RouteError(refusal, code="model_not_in_tier")


def _platform_enabled() -> None:
    from django.conf import settings

    if not settings.PLATFORM_MANAGED_LLM_ENABLED:
        raise RouteError(
            "Platform-managed models are turned off on this installation; use your own key (BYOK) "
            "or a custom endpoint.",
            code="platform_mode_disabled",
        )


def _openrouter_target(ctx: _Context, name: str, *, credential: Credential | None = None) -> ResolvedTarget:
    slug = name.split(":", 1)[1]
    if not slug or "/" not in slug:
        raise RouteError("Write OpenRouter models as openrouter:vendor/model.")
    snapshot = catalog.get_catalog()
    known = snapshot.by_openrouter_id(slug)
    if credential is None and ctx.mode == "platform":
        _check_configured(ctx)
        _platform_enabled()
        if ctx.access is not None and name not in ctx.access.models:
            # The tiers list catalog ids; OpenRouter's way to a model of the tier is that model.
            _check_tier(ctx, *((known.id, known.name) if known is not None else (name,)))
        key, credential_id, mode = env("OPENROUTER_API_KEY"), None, "platform"
        if not key:
            log.warning("platform model %s unreachable: OPENROUTER_API_KEY is not set", name)
            raise RouteError(
                "OpenRouter models are not available on this platform right now; use your own OpenRouter key "
                "(BYOK).",
                code="model_unavailable",
            )
        secrets: JSONObject = {}
        base = _base_url(OPENROUTER)
    else:
        credential = credential or ctx.credential(OPENROUTER)
        if credential is None or credential.kind != OPENROUTER:
            raise RouteError(
                "No OpenRouter key is saved; add one in the LLM settings.", code="credential_missing"
            )
        secrets = _secrets(credential)
        key, credential_id, mode = secrets.get("api_key", ""), credential.pk, "byok"
        if credential.base_url:
            _check_endpoint(credential.base_url)
        base = _base_url(OPENROUTER, credential.base_url)
    # A model the catalog prices is metered at the catalog's price (list cost, like any other); any other one
    # at the cost OpenRouter reports, reserved (and, without a report, metered) at the catalog's highest prices.
    priced = (
        known is not None and known.input_usd_per_mtok is not None and known.output_usd_per_mtok is not None
    )
    in_price, out_price = (
        (known.input_usd_per_mtok, known.output_usd_per_mtok)
        if known is not None and priced
        else snapshot.highest_prices()
    )
    return ResolvedTarget(
        model_id=name,
        provider=OPENROUTER,
        protocol="openai_compat",
        base_url=base,
        api_key=key,
        upstream_model=slug,
        options={"headers": dict(secrets["headers"])} if secrets.get("headers") else {},
        mode=mode,
        credential_id=credential_id,
        input_usd_per_mtok=in_price,
        output_usd_per_mtok=out_price,
        eu_hosted=False,
        tier=known.tier if known else "",
        max_output_tokens=known.max_output_tokens if known else None,
        capabilities=tuple(known.capabilities) if known else (),
        cost_reported=not priced,
        cache_read_usd_per_mtok=known.cache_read_usd_per_mtok if known is not None and priced else None,
        cache_write_usd_per_mtok=known.cache_write_usd_per_mtok if known is not None and priced else None,
    )


def _ollama_target(ctx: _Context, name: str, *, credential: Credential | None = None) -> ResolvedTarget:
    upstream = name.split(":", 1)[1]
    if not upstream:
        raise RouteError("Write local models as ollama:name:size, e.g. ollama:llama3:8b.")
    endpoint = credential or ctx.credential("ollama")
    if (
        endpoint is None
        and ctx.custom_endpoint is not None
        and ctx.custom_endpoint.kind in ("ollama", "openai_compatible")
    ):
        endpoint = ctx.custom_endpoint
    if endpoint is not None:
        return _endpoint_target(endpoint, model_id=name, upstream=upstream)
    base = env("OLLAMA_BASE_URL")
    if not base:
        raise RouteError(
            "No Ollama server is configured; add an Ollama endpoint in the LLM settings.",
            code="credential_missing",
        )
    _check_endpoint(base)
    return ResolvedTarget(
        model_id=name,
        provider="ollama",
        protocol="openai_compat",
        base_url=base,
        api_key=env("OLLAMA_API_KEY"),
        upstream_model=upstream,
        options={},
        mode="custom",
        credential_id=None,
        input_usd_per_mtok=Decimal(0),
        output_usd_per_mtok=Decimal(0),
        eu_hosted=False,
        tier="",
        max_output_tokens=None,
        capabilities=(),
    )


def _target_for_name(
    ctx: _Context, name: str, *, credential: Credential | None = None, embeddings: bool = False
) -> ResolvedTarget:
    """One model name (not `default` or `route:`) → its target under the tenant's mode."""
    name = (name or "").strip()
    if not name:
        raise RouteError("Name a model.")
    if name.startswith("openrouter:"):
        return _openrouter_target(ctx, name, credential=credential)
    if name.startswith("ollama:"):
        return _ollama_target(ctx, name, credential=credential)
    m = catalog.get_catalog().model(name)
    if m is not None:
        if embeddings and "embeddings" not in m.capabilities:
            raise RouteError(f"{name} is not an embedding model.", code="model_not_embedding")
        if not embeddings and m.capabilities == ("embeddings",):
            raise RouteError(
                f"{name} is an embedding model; call /v1/embeddings with it.", code="model_not_chat"
            )
        return _target_for_catalog(ctx, m, credential=credential)
    endpoint = credential if credential is not None and credential.kind in ENDPOINT_KINDS else None
    if endpoint is None and ctx.mode == "custom":
        endpoint = ctx.custom_endpoint
    if endpoint is not None:
        upstream = name.split(":", 1)[1] if name.startswith("custom:") else name
        return _endpoint_target(endpoint, model_id=f"custom:{upstream}", upstream=upstream)
    if name.startswith("custom:"):
        raise RouteError(custom_only_message(name, ctx.mode))
    raise RouteError(
        f"Unknown model “{name}”. Use a catalog id such as {_default_model()}, openrouter:vendor/model, "
        "ollama:name:size, route:NAME or default."
    )


def _default_model() -> str:
    return PLATFORM_DEFAULT_MODEL


def _default_embedding_model(ctx: _Context, primary: str) -> str:
    """What `default` embeds with: the preferences' embedding model (an agent without one: the workspace's), else
    the chat model's provider's embedding model; never the chat model itself, never another provider's model."""
    if ctx.embedding_model:
        return ctx.embedding_model
    snapshot = catalog.get_catalog()
    chat = snapshot.model(primary)
    if ctx.mode != "custom" and chat is not None:
        for m in snapshot.models.values():
            if m.provider == chat.provider and "embeddings" in m.capabilities and m.enabled:
                return m.id
    raise RouteError(
        f"No embedding model is set for `default`, and the chat model {primary} cannot embed. Name an embedding "
        "model in the request (e.g. openai:text-embedding-3-small; GET /v1/models lists them), or set the "
        "workspace's embedding model (LLM settings; embedding_model in POST /api/llm/preferences).",
        code="embedding_model_missing",
    )


def _params(source: Preferences | None) -> JSONObject:
    if source is None:
        return {"temperature": 0.7, "max_tokens": 4096}
    return {"temperature": float(source.temperature), "max_tokens": int(source.max_tokens)}


class _TargetChanges(TypedDict, total=False):
    weight: int
    params: JSONObject


def _with(target: ResolvedTarget, **changes: Unpack[_TargetChanges]) -> ResolvedTarget:
    from dataclasses import replace

    return replace(target, **changes)


def _eu_filter(targets: list[ResolvedTarget], *, what: str) -> list[ResolvedTarget]:
    """Keep EU-hosted targets; the primary (or, on A/B routes, every target) not being one is an error."""
    kept = [t for t in targets if t.eu_hosted]
    if not targets or (not targets[0].eu_hosted and not any(t.weight for t in targets)):
        raise RouteError(
            f"This workspace requires EU data residency and {what} is not EU-hosted; pick an "
            "EU-hosted model (GET /api/llm/models?filter=eu).",
            code="model_not_eu",
        )
    if not kept:
        raise RouteError(
            f"This workspace requires EU data residency and no target of {what} is EU-hosted.",
            code="model_not_eu",
        )
    return kept


def _price_unknown(target: ResolvedTarget) -> RouteError:
    return RouteError(
        f"The model {target.model_id} has no known price, so it cannot be metered; ask an admin to add it to "
        "the catalog or pick a catalog model.",
        code="model_price_unknown",
    )


def _priced_target(
    ctx: _Context, name: str, *, credential: Credential | None = None, embeddings: bool = False
) -> ResolvedTarget:
    """A model's target, refused when its calls could not be metered (never at $0)."""
    target = _target_for_name(ctx, name, credential=credential, embeddings=embeddings)
    if not target.priced:
        raise _price_unknown(target)
    return target


def _skipped(route_name: str, name: str, exc: RouteError) -> None:
    """A fallback (or an A/B target) that cannot be called now is left out of the route: said in the log."""
    level = logging.WARNING if exc.code == "model_price_unknown" else logging.INFO
    log.log(level, "%s: target %s skipped (%s): %s", route_name, name, exc.code, exc.message)


def _default_names(ctx: _Context, embeddings: bool) -> list[str]:
    """The models `default` tries: the preferences' model and fallbacks (a managed agent's platform calls: those
    of its tier, its first model when the preferences name none of them)."""
    primary = ctx.prefs.model if ctx.prefs is not None else _default_model()
    fallbacks = list(ctx.prefs.fallbacks) if ctx.prefs is not None else []
    if ctx.access is not None and ctx.mode == "platform":
        if not ctx.access.models:
            raise RouteError(
                f"No model is set up for {ctx.access.name} yet; contact support, or use your own key (BYOK).",
                code="model_unavailable",
            )
        if primary not in ctx.access.models:
            primary = ctx.access.models[0]
        fallbacks = [f for f in fallbacks if f in ctx.access.models and f != primary]
    if embeddings:
        return [_default_embedding_model(ctx, primary)]
    return [primary, *fallbacks]


def _default_targets(ctx: _Context, embeddings: bool) -> list[ResolvedTarget]:
    targets = []
    for i, name in enumerate(_default_names(ctx, embeddings)):
        try:
            targets.append(_with(_priced_target(ctx, name, embeddings=embeddings), params=_params(ctx.prefs)))
        except RouteError as exc:
            if i == 0:
                raise
            # A fallback that cannot be reached any more (key deleted, model disabled, no price) is skipped.
            _skipped("default", name, exc)
    return targets


def _route_targets(ctx: _Context, route: Route, embeddings: bool) -> list[ResolvedTarget]:
    """The route's targets that can be called now, in order. A target that cannot (its mode changed since the
    route was saved, a key deleted, a model disabled) is skipped, the primary too: the call falls through to the
    next target that works, as it would on a failing upstream (the Routes page marks the skipped ones). With none
    left, the first target's reason is the error."""
    targets = []
    first_error: RouteError | None = None
    for spec in route.targets:
        credential = ctx.credential_by_id(spec.get("credential")) if spec.get("credential") else None
        try:
            target = _priced_target(ctx, spec["model"], credential=credential, embeddings=embeddings)
        except RouteError as exc:
            first_error = first_error or exc
            _skipped(f"route:{route.name}", spec["model"], exc)
            continue
        params = {**_params(ctx.prefs), **(spec.get("params") or {})}
        targets.append(_with(target, weight=int(spec.get("weight") or 0), params=params))
    if not targets:
        if first_error is not None and len(route.targets) == 1:
            raise first_error
        reason = f" ({first_error.message})" if first_error is not None else ""
        raise RouteError(f"No target of route:{route.name} can be reached{reason}.", code="model_unavailable")
    return targets


class TargetProblem(TypedDict):
    """A route target a call cannot reach now (its position in the route and model), and why (the router's own
    words)."""

    target: int
    model: str
    reason: str


def route_problems(tenant_id: int, routes: list[Route]) -> dict[int, list[TargetProblem]]:
    """Per route id, the targets a call of the workspace (no agent) through it cannot reach now, as the router
    resolves and admits them: what the Routes page marks and a change of settings warns about."""
    access = policy().managed_access(tenant_id, None)
    ctx = _load_context(tenant_id, None, access)
    refusal = platform_refusal(access, policy().limits_for(tenant_id))
    found: dict[int, list[TargetProblem]] = {}
    for route in routes:
        problems: list[TargetProblem] = []
        for i, spec in enumerate(route.targets):
            credential = ctx.credential_by_id(spec.get("credential")) if spec.get("credential") else None
            reason = _target_problem(ctx, spec["model"], credential, refusal)
            if reason is not None:
                problems.append(TargetProblem(target=i, model=spec["model"], reason=reason))
        if problems:
            found[route.pk] = problems
    return found


def _target_problem(
    ctx: _Context, model: str, credential: Credential | None, platform_refused: str | None
) -> str | None:
    try:
        target = _priced_target(ctx, model, credential=credential)
    except RouteError as exc:
        if exc.code != "model_not_chat":
            return exc.message
        try:  # an embedding model: an embeddings route
            target = _priced_target(ctx, model, credential=credential, embeddings=True)
        except RouteError as again:
            return again.message
    if target.mode == "platform" and platform_refused is not None:
        return platform_refused
    return None


def _resolve_in(ctx: _Context, model: str, embeddings: bool, *, route: Route | None = None) -> ResolvedRoute:
    """The route of a requested model under a loaded context (`route`: the Route a `route:NAME` names, when the
    caller has it already)."""
    model = (model or "").strip()
    cache_ttl = None
    eu_only = ctx.eu_only
    fallback_on: frozenset[str] = frozenset()
    if model == "default":
        targets = _default_targets(ctx, embeddings)
    elif model.startswith("route:"):
        if route is None:
            route = Route.objects.for_tenant(ctx.tenant.id).filter(name=model[6:]).first()
        if route is None:
            raise RouteError(f"No route named “{model[6:]}”. Create it under /api/llm/routes.")
        eu_only = eu_only or route.eu_only
        cache_ttl = route.cache_ttl_seconds or None
        fallback_on = frozenset(route.fallback_on or ())
        targets = _route_targets(ctx, route, embeddings)
    else:
        targets = [_with(_priced_target(ctx, model, embeddings=embeddings), params=_params(ctx.prefs))]
    if eu_only:
        targets = _eu_filter(targets, what=model if model != "default" else targets[0].model_id)
    weighted = sum(1 for t in targets if t.weight > 0) >= 2
    return ResolvedRoute(
        name=model,
        targets=tuple(targets),
        weighted=weighted,
        cache_ttl=cache_ttl,
        eu_only=eu_only,
        fallback_on=fallback_on,
    )


def _resolve_cold(
    tenant_id: int, agent_id: int | None, model: str, embeddings: bool, access: ManagedAccess | None
) -> ResolvedRoute:
    return _resolve_in(_load_context(tenant_id, agent_id, access), model, embeddings)


def platform_model_refusal(
    tenant: Tenant, access: ManagedAccess | None, model_id: str, *, embeddings: bool = False
) -> str | None:
    """Why a platform-mode call of the model would not resolve for an agent on this managed tier (None: it
    would): outside the tier, unreachable with the platform's keys, or without a price. The preferences and
    routes validation ask this very resolution, so what saves is what calls."""
    ctx = _Context(tenant=tenant, prefs=None, credentials=[], eu_only=False, access=access, mode="platform")
    try:
        _priced_target(ctx, model_id, embeddings=embeddings)
    except RouteError as exc:
        return exc.message
    return None


def platform_refusal(access: ManagedAccess | None, limits: Limits) -> str | None:
    """Why a platform-mode call of this agent is refused (None: it is not). A managed agent reaches its tier
    (resolution keeps it to the tier's models) unless the tier is paused; any other call needs a workspace plan
    that includes platform-managed models."""
    if access is not None:
        return access.blocked_reason or None
    if limits.platform_allowed:
        return None
    return limits.platform_block_reason or PLATFORM_NOT_INCLUDED


class Resolver:
    """Many model names resolved for one tenant and agent after one load, as calls would resolve them: what the
    listings ask (`GET /v1/models`, the model pickers), so what is listed is what calls.

    `eu_only` False ignores the residency the preferences ask (a picker filters on its own checkbox)."""

    def __init__(self, tenant_id: int, agent_id: int | None, *, eu_only: bool | None = None):
        access = policy().managed_access(tenant_id, agent_id)
        self.ctx = _load_context(tenant_id, agent_id, access)
        if eu_only is not None:
            self.ctx.eu_only = eu_only
        self.platform_refusal = platform_refusal(access, policy().limits_for(tenant_id))

    def use_mode(self, mode: str) -> None:
        """Resolve from now on as if the preferences were in `mode` (a picker offers each mode's models)."""
        self.ctx.mode = mode

    def callable(self, model: str, *, embeddings: bool = False, route: Route | None = None) -> bool:
        """Whether a call naming `model` would be resolved and admitted past the platform-mode check."""
        try:
            resolved = _resolve_in(self.ctx, model, embeddings, route=route)
        except RouteError:
            return False
        return resolved.targets[0].mode != "platform" or self.platform_refusal is None


_ROUTE_CACHE_SIZE = 5_000


def resolve_route(
    *, tenant_id: int, agent_id: int | None, model: str, embeddings: bool = False
) -> ResolvedRoute:
    """The targets for a requested model; warm calls read only the config version (memoised ~1 s) and the
    agent's managed tier (billing's cached lookup)."""
    access = policy().managed_access(tenant_id, agent_id)
    key = (tenant_id, agent_id, model, embeddings, access, config_version(tenant_id))
    route = _routes.get(key)
    if route is not None:
        return route
    route = _resolve_cold(tenant_id, agent_id, model, embeddings, access)
    with _lock:
        _routes[key] = route
        while len(_routes) > _ROUTE_CACHE_SIZE:
            _routes.popitem(last=False)
    return route


def clear_route_cache() -> None:
    with _lock:
        _routes.clear()
    forget_version_memo()
