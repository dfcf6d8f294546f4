"""Connection tests: one tiny real chat call ("ping") with saved or unsaved settings, and Ollama discovery.

The result says in plain words what to fix: a refused key, no credit, an unknown model (with the models the
endpoint does offer), a server that is not running, DNS, TLS or a timeout.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, NotRequired, TypedDict

from django.core.exceptions import ValidationError
from django.db import transaction

from llm.calls.admission import CallContext
from llm.calls.call import Call
from llm.calls.errors import GatewayError
from llm.calls.hints import problem_hint
from llm.calls.resolution import ResolvedRoute, ResolvedTarget, RouteError, _resolve_cold
from llm.config import ssrf
from llm.config.credentials import ENDPOINT_KINDS, credential_mark_verified, origin_of, secrets_of
from llm.config.preferences import preferences_save
from llm.config.versions import bump_config_version
from llm.metering.queue import record_test_call
from llm.models import Credential
from llm.policy import policy
from llm.providers import ProviderError, Target, Timeouts, get_adapter
from llm.providers.base import scrub_for
from llm.providers.openai_compat import list_models, ollama_tags
from llm.sync import from_sync
from tenants.allowlist import allows, describe
from tenants.audit import SYSTEM, Actor, audit_record
from tenants.models import Agent, ApiKey, Tenant, User

if TYPE_CHECKING:
    from llm.config.preferences import PreferencesInput
    from llm.jsontypes import JSONObject

log = logging.getLogger(__name__)
PING_TIMEOUT = 20.0
MAX_LISTED_MODELS = 20


class ConnectionProblem(TypedDict):
    """What went wrong, in plain words, and what to do about it."""

    kind: str  # a ProviderError kind, or blocked, config, cap, not_allowed
    message: str
    hint: str
    models: NotRequired[list[str]]  # for not_found: what the endpoint does offer


class ConnectionTestResult(TypedDict):
    """The answer of `POST /api/llm/test-connection`."""

    ok: bool
    latency_ms: int | None
    model: str | None
    error: ConnectionProblem | None


class OllamaModels(TypedDict):
    """Ollama discovery's answer: the server asked and what it has pulled, as `ollama:name:size` ids."""

    base_url: str
    models: list[str]


class EndpointModels(TypedDict):
    """Discovery's answer for a custom endpoint: the models it serves, as names it knows (what the modal's model
    field takes), and which list answered: `openai` (GET {base_url}/models) or `ollama` (GET /api/tags)."""

    base_url: str
    source: str
    models: list[str]


class _Outcome(TypedDict):
    """One ping, before it is recorded and answered."""

    ok: bool
    latency_ms: int | None
    error: ConnectionProblem | None
    usage: JSONObject | None  # the adapter's usage block


class _Rollback(Exception):
    pass


def _target_for(*, tenant: Tenant, agent: Agent | None, data: PreferencesInput | None) -> ResolvedTarget:
    """The primary target of the given (unsaved) preferences, or of the saved ones when `data` is None.

    Unsaved settings are saved inside a transaction that is always rolled back, so the very code that
    resolves real calls builds the target and nothing is stored. A saved endpoint moved to another origin keeps
    none of its saved secrets there: the test sends only those given with it (the serializer validated `data`
    with `new_origin="drop"`).
    """
    agent_id = agent.id if agent else None
    access = policy().managed_access(tenant.id, agent_id)
    if data is None:
        return _resolve_cold(tenant.id, agent_id, "default", False, access).targets[0]

    holder: dict[str, ResolvedTarget] = {}
    try:
        with transaction.atomic():
            preferences_save(tenant=tenant, agent=agent, actor=SYSTEM, data=data)
            holder["target"] = _resolve_cold(tenant.id, agent_id, "default", False, access).targets[0]
            raise _Rollback
    except _Rollback:
        pass
    finally:
        bump_config_version(tenant.id)  # the rolled-back save must not leave a stale route behind
    return holder["target"]


def _outside_allow_lists(
    target: ResolvedTarget, *, agent: Agent | None, api_key: ApiKey | None
) -> str | None:
    """Why the ping may not go out: the key testing (and its agent) is held to its allow-lists as on any call it
    makes, and the agent whose settings are tested to its own, whose keys would be refused that model. A list
    naming `default` allows the default settings whatever their model."""
    lists: list[tuple[str, list[str]]] = []
    if api_key is not None:
        lists.append(("This key", api_key.allowed_models))
        if api_key.agent_id is not None and api_key.agent is not None:
            lists.append((f"The agent “{api_key.agent.slug}”", api_key.agent.allowed_models))
    if agent is not None:
        lists.append((f"The agent “{agent.slug}”", agent.allowed_models))
    for whose, patterns in lists:
        if patterns and "default" not in patterns and not allows(patterns, target.model_id):
            return f"{whose} may call only: {describe(patterns)}."
    return None


def _hint(kind: str, message: str, target: ResolvedTarget | None) -> str:
    if target is None:  # an address the user typed (discovery, an endpoint that cannot be resolved)
        return problem_hint(kind, message, seconds=PING_TIMEOUT, own_endpoint=True)
    return problem_hint(
        kind,
        message,
        base_url=target.base_url,
        provider=target.provider,
        model=target.upstream_model,
        seconds=PING_TIMEOUT,
    )


async def _ping(target: ResolvedTarget) -> _Outcome:
    adapter = get_adapter(target.protocol)
    provider_target = Target(
        provider=target.provider,
        protocol=target.protocol,
        base_url=target.base_url,
        api_key=target.api_key,
        model=target.upstream_model,
        options=target.options,
        timeouts=Timeouts(connect=5.0, first_byte=PING_TIMEOUT, idle=PING_TIMEOUT),
    )
    body = {
        "model": target.upstream_model,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 5,
    }
    started = time.perf_counter()
    try:
        result = await adapter.chat(provider_target, body)
    except ProviderError as exc:
        latency = int((time.perf_counter() - started) * 1000)
        error: ConnectionProblem = {
            "kind": exc.kind,
            "message": exc.message,
            "hint": _hint(exc.kind, exc.message, target),
        }
        if exc.kind == "not_found":
            offered = exc.models
            if not offered:
                try:
                    offered = await adapter.list_models(provider_target)
                except ProviderError:
                    offered = None
            if offered:
                # the upstream's own words too: scrubbed like its error messages (and kept short)
                shown = sorted(scrub_for(provider_target, str(m))[:100] for m in offered)[:MAX_LISTED_MODELS]
                error["models"] = shown
                error["hint"] += (
                    " It offers: " + ", ".join(shown) + ("…" if len(offered) > len(shown) else "") + "."
                )
        return {"ok": False, "latency_ms": latency, "error": error, "usage": None}
    latency = int((time.perf_counter() - started) * 1000)
    return {"ok": True, "latency_ms": latency, "error": None, "usage": result.get("usage") or {}}


async def _metered_ping(target: ResolvedTarget, ctx: CallContext) -> _Outcome:
    """A test of the platform's own keys is a call like any other: admitted against the tenant's caps, rate
    limits and the key's and agent's budgets, priced, and metered once (as request type `test`)."""
    route = ResolvedRoute(
        name="test-connection", targets=(target,), weighted=False, cache_ttl=None, eu_only=False
    )
    call = Call(
        ctx,
        route,
        {"model": target.model_id, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 5},
    )
    started = time.perf_counter()
    try:
        await call.start()
        result = await call.complete()
    except GatewayError as exc:
        kind = {"tcu_hard_cap_reached": "cap", "rate_limit_exceeded": "rate_limit"}.get(exc.code or "", "")
        kind = kind or exc.error_kind or "unavailable"
        latency = int((time.perf_counter() - started) * 1000) if call.reservation is not None else None
        return {
            "ok": False,
            "latency_ms": latency,
            "usage": None,
            "error": {"kind": kind, "message": exc.message, "hint": _hint(kind, exc.message, target)},
        }
    finally:
        await call.abort()
    return {
        "ok": True,
        "latency_ms": int((time.perf_counter() - started) * 1000),
        "error": None,
        "usage": result.get("usage") or {},
    }


def _new_origin(tenant: Tenant, target: ResolvedTarget) -> str | None:
    """The target's origin as text when no saved credential of the tenant is bound to it (None otherwise, and
    for the platform's own keys)."""
    if target.credential_id is None:
        return None
    origin = origin_of(target.base_url)
    saved = list(Credential.objects.for_tenant(tenant).values_list("pk", "base_url"))
    if any(pk == target.credential_id and not url for pk, url in saved):
        return None  # a saved provider key at the provider's own address
    if any(url and origin_of(url) == origin for _, url in saved):
        return None
    scheme, host, port = origin
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _record(tenant: Tenant, user: User | None, target: ResolvedTarget, outcome: _Outcome) -> None:
    usage = outcome.get("usage") or {}
    try:
        record_test_call(
            tenant_id=tenant.id,
            user_id=user.pk if user else None,
            provider=target.provider,
            model=target.model_id,
            mode=target.mode,
            latency_ms=outcome["latency_ms"] or 0,
            ok=outcome["ok"],
            error_kind=outcome["error"]["kind"] if outcome["error"] else "",
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )
    except Exception:  # metering must never break the answer to the user
        log.exception("could not record the test call")


def test_connection(
    *,
    tenant: Tenant,
    agent: Agent | None,
    data: PreferencesInput | None,
    user: User | None = None,
    api_key: ApiKey | None = None,
    actor: Actor | None = None,
) -> ConnectionTestResult:
    """Send "ping" with the given settings (unsaved, as `llm.serializers.PreferencesWriteSerializer` validated them
    with `new_origin="drop"`) or, with None, the saved ones."""
    try:
        target = _target_for(tenant=tenant, agent=agent, data=data)
    except RouteError as exc:
        kind = "blocked" if exc.code == "endpoint_blocked" else "config"
        return {
            "ok": False,
            "latency_ms": None,
            "model": None,
            "error": {"kind": kind, "message": exc.message, "hint": _hint(kind, exc.message, None)},
        }
    refused = _outside_allow_lists(target, agent=agent, api_key=api_key)
    if refused is not None:  # nothing is sent, spent or audited
        return {
            "ok": False,
            "latency_ms": None,
            "model": target.model_id,
            "error": {
                "kind": "not_allowed",
                "message": refused,
                "hint": _hint("not_allowed", refused, target),
            },
        }
    origin = _new_origin(tenant, target) if data is not None else None
    if origin is not None:
        audit_record(
            tenant=tenant,
            actor=actor or Actor(user=user, api_key=api_key),
            action="llm.connection_test.new_origin",
            object_type="connection_test",
            object_repr=f"Connection test to {origin}",
            changes={"origin": origin, "mode": target.mode, "model": target.model_id},
        )
    if target.mode == "platform":
        ctx = CallContext(
            tenant_id=tenant.id,
            request_type="test",
            agent_id=agent.pk if agent else None,
            user_id=user.pk if user else None,
            api_key_id=api_key.pk if api_key else None,
            key_spend_limit=api_key.spend_limit_tcu if api_key else None,
        )

        outcome = from_sync(_metered_ping, target, ctx)
    else:
        outcome = from_sync(_ping, target)
        _record(tenant, user, target, outcome)
    if outcome["ok"] and target.credential_id and data is None:
        credential_mark_verified(Credential(pk=target.credential_id, tenant=tenant))
    return {
        "ok": outcome["ok"],
        "latency_ms": outcome["latency_ms"],
        "model": target.model_id,
        "error": outcome["error"],
    }


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def ollama_models(*, base_url: str, api_key: str = "") -> OllamaModels:
    """The models an Ollama server has pulled, as `ollama:name:size` ids (the URL is SSRF-checked)."""
    base_url = (base_url or "").strip() or "http://127.0.0.1:11434"
    try:
        ssrf.check_url(base_url)
    except ssrf.BlockedAddress as exc:
        raise ValidationError({"base_url": [str(exc)]}) from None
    try:
        names = from_sync(ollama_tags, base_url, api_key)
    except ProviderError as exc:
        raise ValidationError(
            {
                "base_url": [
                    f"{exc.message}. {problem_hint(exc.kind, exc.message, base_url=base_url, provider='ollama')}"
                ]
            }
        ) from None
    models = sorted({f"ollama:{n}" if ":" in n else f"ollama:{n}:latest" for n in names if n})
    return {"base_url": base_url, "models": models}


DISCOVERY_TIMEOUT = 10.0


def _saved_endpoint_key(tenant: Tenant, base_url: str) -> str:
    """The bearer token the tenant saved for an endpoint at this very origin (a stored secret goes only to the
    origin it was saved for), else none."""
    origin = origin_of(base_url)
    saved = Credential.objects.for_tenant(tenant).filter(kind__in=ENDPOINT_KINDS).order_by("-pk")
    for credential in saved:
        if credential.base_url and origin_of(credential.base_url) == origin:
            key = secrets_of(credential).get("api_key")
            if key:
                return str(key)
    return ""


def _discovery_problem(exc: ProviderError, base_url: str) -> str:
    if exc.kind in ("not_found", "bad_request"):
        return (
            f"{base_url} answered neither an OpenAI-compatible model list (GET /v1/models) nor Ollama's "
            "(GET /api/tags). Check the base URL: for vLLM, LM Studio and most servers it ends in /v1, for "
            "Ollama it is e.g. http://localhost:11434/v1."
        )
    if exc.kind == "auth":
        return "The server refused the request (401/403): enter its API key / bearer token, or check it."
    if exc.kind == "timeout":
        return (
            f"No answer from {base_url} within {DISCOVERY_TIMEOUT:g} s: is the server up and the URL right?"
        )
    return _hint(exc.kind, exc.message, None).replace("the endpoint", base_url)


def endpoint_models(*, tenant: Tenant, base_url: str, api_key: str = "") -> EndpointModels:
    """The models an OpenAI-compatible server (vLLM, LM Studio, Ollama's /v1, …) lists at `{base_url}/models`,
    else, when that list is not there, those an Ollama server lists at /api/tags. The URL is SSRF-checked; without
    a key typed, the one saved for an endpoint at the same origin is sent. Errors are field errors in plain words.
    """
    base_url = (base_url or "").strip().rstrip("/")
    if not base_url:
        raise ValidationError(
            {"base_url": ["Enter the server's base URL first, e.g. http://localhost:11434/v1."]}
        )
    try:
        ssrf.check_url(base_url)
    except ssrf.BlockedAddress as exc:
        raise ValidationError({"base_url": [str(exc)]}) from None
    key = api_key.strip() or _saved_endpoint_key(tenant, base_url)
    target = Target(
        provider="custom",
        protocol="openai_compat",
        base_url=base_url,
        api_key=key,
        timeouts=Timeouts(connect=5.0, first_byte=DISCOVERY_TIMEOUT, idle=DISCOVERY_TIMEOUT),
    )
    try:
        names = from_sync(list_models, target)
        return {"base_url": base_url, "source": "openai", "models": sorted({n for n in names if n})}
    except ProviderError as exc:
        problem = exc
    if problem.kind in ("not_found", "bad_request"):  # no OpenAI model list there: Ollama's own API?
        try:
            names = from_sync(ollama_tags, base_url, key, read_timeout=DISCOVERY_TIMEOUT)
            return {"base_url": base_url, "source": "ollama", "models": sorted({n for n in names if n})}
        except ProviderError:
            pass
    raise ValidationError({"base_url": [_discovery_problem(problem, base_url)]})
