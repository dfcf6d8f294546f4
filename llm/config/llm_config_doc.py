"""`llm_config:` documents: the seed's YAML for LLM settings, read into routes and written from them.

Three shapes are read (and may be combined), each giving routes (`route:NAME`):

    llm_config:                      # one provider: the route `default` (or `name:`)
      provider: anthropic
      model: claude-sonnet-4.5       # or a full id, model: anthropic:claude-sonnet-4.5
      temperature: 0.2
      max_tokens: 2048
      fallbacks:                     # optional, tried in this order
        - {provider: openai, model: gpt-4o-mini}

    llm_config:                      # per-task routing: one route per task (`route:rule_extraction`)
      default: {provider: openai, model: gpt-4o-mini}
      tasks:
        rule_extraction: {provider: anthropic, model: claude-sonnet-4.5, temperature: 0}

    llm_config:                      # on-premise: a saved endpoint of the workspace, found by name or URL
      provider: custom               # or openai_compatible, vllm, ollama, azure_openai, bedrock
      endpoint: https://llm.corp.example/v1
      authentication: bearer-token   # or none
      credential: corp-llm           # optional: the saved endpoint's name
      model: llama-3.1-70b-instruct

A target also takes `credential` (a saved key or endpoint, by name) and `weight` (A/B split); a route takes
`description`, `cache_ttl_seconds` and `eu_only`. Secrets never travel in these files: a `token` or `api_key` is
refused with where to save it instead. The routes read here are then checked exactly as any route is
(`llm.serializers.RouteSerializer`), so what imports is what the gateway would call.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

import yaml

from llm.config.credentials import ENDPOINT_KINDS
from llm.models import Credential, Route

ROOT = "llm_config"
DEFAULT_ROUTE = "default"
ENDPOINT_PROVIDERS = {"custom", "openai_compatible", "vllm", "on-premise", "on_premise", *ENDPOINT_KINDS}
AUTHENTICATIONS = {"bearer-token", "bearer", "api-key", "none"}
SECRET_KEYS = {"token", "api_key", "apikey", "bearer_token", "secret", "password", "secret_access_key"}
TARGET_KEYS = {
    "provider",
    "model",
    "temperature",
    "max_tokens",
    "credential",
    "weight",
    "endpoint",
    "authentication",
}
ROUTE_KEYS = TARGET_KEYS | {"name", "description", "cache_ttl_seconds", "eu_only", "fallbacks", "fallback"}
ROOT_KEYS = ROUTE_KEYS | {"default", "tasks", "version"}


class NotReadable(ValueError):
    """The document cannot be read as an `llm_config:`; the messages say where and why (never a secret)."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


def is_llm_config(doc: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(doc, dict) and ROOT in doc


def route_entries(doc: dict[str, Any], *, credentials: list[Credential]) -> list[dict[str, Any]]:
    """The routes an `llm_config:` document describes, in the project's route shape (credentials by name)."""
    config = doc.get(ROOT)
    if not isinstance(config, dict):
        raise NotReadable(["llm_config: expected a mapping (provider, model, … or default / tasks)."])
    problems: list[str] = []
    unknown = sorted(str(k) for k in config if k not in ROOT_KEYS and k not in SECRET_KEYS)
    if unknown:
        problems.append(f"llm_config: unknown field(s) {', '.join(unknown)}.")
    endpoints = [c for c in credentials if c.kind in ENDPOINT_KINDS]
    entries: list[dict[str, Any]] = []
    if "model" in config or "provider" in config or any(k in config for k in SECRET_KEYS):
        name = config.get("name", DEFAULT_ROUTE)
        entries.append(_route(name, config, "llm_config", endpoints, problems))
    if "default" in config:
        entries.append(_route(DEFAULT_ROUTE, config["default"], "llm_config.default", endpoints, problems))
    tasks = config.get("tasks")
    if tasks is not None and not isinstance(tasks, dict):
        problems.append("llm_config.tasks: expected a mapping of task name to its model.")
    for task, spec in (tasks or {}).items() if isinstance(tasks, dict) else ():
        entries.append(_route(_task_name(task), spec, f"llm_config.tasks.{task}", endpoints, problems))
    if not entries and not problems:
        problems.append("llm_config: name a provider and model, a default, or tasks.")
    if problems:
        raise NotReadable(problems)
    return entries


def _task_name(task: Any) -> Any:
    """A task's route name as people write task names (`Rule Extraction` → `rule_extraction`)."""
    if not isinstance(task, str):
        return task
    return re.sub(r"[^a-z0-9_-]+", "_", task.strip().lower()).strip("_") or task


def _route(
    name: Any, spec: Any, where: str, endpoints: list[Credential], problems: list[str]
) -> dict[str, Any]:
    if not isinstance(spec, dict):
        problems.append(f"{where}: expected a mapping with provider and model.")
        return {"name": name, "targets": []}
    allowed = ROOT_KEYS if where == "llm_config" else ROUTE_KEYS
    unknown = sorted(str(k) for k in spec if k not in allowed and k not in SECRET_KEYS)
    if unknown and where != "llm_config":  # the root's unknown keys were named already
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}.")
    fallbacks = spec.get("fallbacks", spec.get("fallback")) or []
    if isinstance(fallbacks, str | dict):
        fallbacks = [fallbacks]
    if not isinstance(fallbacks, list):
        problems.append(f"{where}.fallbacks: expected a list of models.")
        fallbacks = []
    targets = [_target(spec, where, endpoints, problems)]
    for i, fallback in enumerate(fallbacks, 1):
        spec_i = {"model": fallback} if isinstance(fallback, str) else fallback
        targets.append(_target(spec_i, f"{where}.fallbacks[{i}]", endpoints, problems))
    entry: dict[str, Any] = {"name": name, "targets": targets}
    for key in ("description", "cache_ttl_seconds", "eu_only"):
        if key in spec:
            entry[key] = spec[key]
    return entry


def _target(spec: Any, where: str, endpoints: list[Credential], problems: list[str]) -> dict[str, Any]:
    if not isinstance(spec, dict):
        problems.append(f"{where}: expected a mapping with provider and model.")
        return {"model": ""}
    secrets = sorted(str(k) for k in spec if k in SECRET_KEYS)
    if secrets:
        problems.append(
            f"{where}: {', '.join(secrets)} — secrets are not read from files. Save the key or token on the "
            "LLM settings page and name it here with `credential: NAME`."
        )
    provider = spec.get("provider")
    model = spec.get("model")
    if not isinstance(model, str) or not model.strip():
        problems.append(f"{where}: model is required.")
        return {"model": ""}
    target: dict[str, Any] = {}
    if provider in ENDPOINT_PROVIDERS or "endpoint" in spec:
        target["model"] = model.strip()
        credential = _endpoint(spec, where, endpoints, problems)
        if credential is not None:
            target["credential"] = credential.name
    else:
        target["model"] = _model_id(provider, model.strip(), where, problems)
        if spec.get("credential") is not None:
            target["credential"] = spec["credential"]
    params = {k: spec[k] for k in ("temperature", "max_tokens") if k in spec}
    if params:
        target["params"] = params
    if "weight" in spec:
        target["weight"] = spec["weight"]
    return target


def _model_id(provider: Any, model: str, where: str, problems: list[str]) -> str:
    if provider is None:
        return model  # a full id (anthropic:claude-sonnet-4.5), checked as any route target is
    if not isinstance(provider, str) or not provider.strip():
        problems.append(f"{where}: provider must be a name such as anthropic, openai or openrouter.")
        return model
    provider = provider.strip().lower()
    return model if model.startswith(f"{provider}:") else f"{provider}:{model}"


def _endpoint(
    spec: dict[str, Any], where: str, endpoints: list[Credential], problems: list[str]
) -> Credential | None:
    """The saved endpoint a target names (`credential`) or points at (`endpoint`), with the authentication the
    document expects."""
    name, url = spec.get("credential"), spec.get("endpoint")
    auth = spec.get("authentication", "none")
    if auth not in AUTHENTICATIONS:
        problems.append(f"{where}.authentication: one of {', '.join(sorted(AUTHENTICATIONS))}.")
        return None
    found = None
    if name is not None:
        found = next((c for c in endpoints if c.name == name), None)
        if found is None:
            problems.append(f"{where}: no saved endpoint named “{str(name)[:100]}”.")
            return None
    elif isinstance(url, str) and url.strip():
        wanted = url.strip().rstrip("/")
        found = next((c for c in endpoints if c.base_url.rstrip("/") == wanted), None)
        if found is None:
            problems.append(
                f"{where}: no saved endpoint at {wanted[:200]}. Add it on the LLM settings page "
                "(Enterprise endpoint, with its token), then import again."
            )
            return None
    else:
        problems.append(f"{where}: an on-premise model needs `endpoint: URL` or `credential: NAME`.")
        return None
    if auth != "none" and not found.api_key_masked:
        problems.append(
            f"{where}: the document says authentication: {auth}, but the endpoint “{found.name}” has no token "
            "saved. Add it on the LLM settings page."
        )
    return found


# --- export ----------------------------------------------------------------------------------------------


def export(routes: list[Route], credentials: dict[int, Credential]) -> str:
    """Routes as an `llm_config:` document: the route `default` as `default:`, the others as tasks; keys and
    endpoints by name, never a secret."""
    doc: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    for route in routes:
        spec = _export_route(route, credentials)
        if route.name == DEFAULT_ROUTE:
            doc["default"] = spec
        else:
            tasks[route.name] = spec
    if tasks:
        doc["tasks"] = tasks
    return yaml.safe_dump({ROOT: doc}, sort_keys=False, allow_unicode=True)


def _export_route(route: Route, credentials: dict[int, Credential]) -> dict[str, Any]:
    targets = [_export_target(t, credentials) for t in route.targets]
    spec = dict(targets[0]) if targets else {}
    if len(targets) > 1:
        spec["fallbacks"] = targets[1:]
    if route.description:
        spec["description"] = route.description
    if route.cache_ttl_seconds:
        spec["cache_ttl_seconds"] = route.cache_ttl_seconds
    if route.eu_only:
        spec["eu_only"] = True
    return spec


def _export_target(target: dict[str, Any], credentials: dict[int, Credential]) -> dict[str, Any]:
    credential = credentials.get(target.get("credential") or 0)
    model = str(target["model"])
    out: dict[str, Any]
    if credential is not None and credential.kind in ENDPOINT_KINDS:
        out = {
            "provider": "custom" if credential.kind == "openai_compatible" else credential.kind,
            "endpoint": credential.base_url,
            "authentication": "bearer-token" if credential.api_key_masked else "none",
            "credential": credential.name,
            "model": model,
        }
    else:
        provider, _, name = model.partition(":")
        out = {"provider": provider, "model": name} if name else {"model": model}
        if credential is not None:
            out["credential"] = credential.name
    params = target.get("params") or {}
    out.update({k: params[k] for k in ("temperature", "max_tokens") if k in params})
    if target.get("weight"):
        out["weight"] = target["weight"]
    return out
