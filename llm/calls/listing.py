"""What a key may call now, for `GET /v1/models` and the model pickers: `default`, the tenant's routes, the catalog
models, the custom endpoint's model and the models its Ollama servers have pulled (as `ollama:name:size`), each
resolved as a call of it would be (`resolution.Resolver`), so what is listed is what calls. And the routes as the
API and the Routes page show them, with the targets a call cannot reach now."""

from __future__ import annotations

import hashlib
import logging

from llm.calls.resolution import Resolver, route_problems
from llm.config import ssrf
from llm.config.catalog import get_catalog
from llm.config.credentials import secrets_of
from llm.config.routes import route_json
from llm.jsontypes import JSONObject
from llm.models import Credential, Route
from llm.providers import ProviderError
from llm.providers.openai_compat import ollama_tags
from llm.sync import from_sync

log = logging.getLogger(__name__)


def models_for_gateway(*, tenant_id: int, agent_id: int | None) -> list[str]:
    resolver = Resolver(tenant_id, agent_id)
    ids = ["default"] if resolver.callable("default") else []
    for route in Route.objects.for_tenant(tenant_id):
        if resolver.callable(f"route:{route.name}", route=route):
            ids.append(f"route:{route.name}")
    ids += [
        m.id
        for m in get_catalog().models.values()
        if m.enabled
        and m.provider != "custom"
        and resolver.callable(m.id, embeddings=m.capabilities == ("embeddings",))
    ]
    prefs = resolver.ctx.prefs
    own = prefs.model if resolver.ctx.mode == "custom" and prefs is not None else ""
    if own and own not in ids and resolver.callable(own):  # the name the custom endpoint knows
        ids.append(own)
    pulled = _ollama_models(tenant_id, eu_only=resolver.ctx.eu_only)
    ids += [m for m in pulled if m not in ids and resolver.callable(m)]
    return ids


def routes_with_reach(tenant_id: int, routes: list[Route]) -> list[JSONObject]:
    """Each route as `route_json` shows it, each target with `problem` (why a call of the workspace cannot reach it
    now, in the router's words; None when it can) and the route `reachable` (some target can be reached: calls
    through it skip the others)."""
    names = dict(Credential.objects.for_tenant(tenant_id).values_list("pk", "name"))
    found = route_problems(tenant_id, routes) if routes else {}
    shown = []
    for route in routes:
        row = route_json(route, credential_names=names)
        reasons = {p["target"]: p["reason"] for p in found.get(route.pk, [])}
        for i, target in enumerate(row["targets"]):
            target["problem"] = reasons.get(i)
        row["reachable"] = len(reasons) < len(row["targets"])
        shown.append(row)
    return shown


def picker_models(*, tenant_id: int, agent_id: int | None) -> dict[str, list[str]]:
    """The models the LLM settings' pickers offer in platform and byok mode (chat models for the model and the
    fallbacks, embedding models for the embedding model): those a call in that mode could reach now (a managed
    agent's tier; the providers the saved keys reach). The picker applies its own EU checkbox, so residency is left
    to it."""
    models = [
        (m.id, "embeddings" in m.capabilities)
        for m in get_catalog().models.values()
        if m.enabled and m.provider != "custom"
    ]
    resolver = Resolver(tenant_id, agent_id, eu_only=False)
    picks: dict[str, list[str]] = {}
    for mode in ("platform", "byok"):
        resolver.use_mode(mode)
        picks[mode] = [
            model_id for model_id, embeds in models if resolver.callable(model_id, embeddings=embeds)
        ]
    return picks


OLLAMA_TAGS_TTL, OLLAMA_DOWN_TTL = 30, 10  # seconds a server's list (or its being down) is remembered


def _ollama_models(tenant_id: int, *, eu_only: bool) -> list[str]:
    """Ask each of the tenant's Ollama servers what it has pulled (remembered for a while, shared by the workers);
    a server that is down is left out (logged) and not asked again for a few seconds."""
    found: list[str] = []
    for endpoint in Credential.objects.for_tenant(tenant_id).filter(kind="ollama").order_by("pk"):
        if eu_only and not (endpoint.config or {}).get("eu_hosted"):
            continue
        found += _pulled(endpoint)
    return sorted(set(found))


def _pulled(endpoint: Credential) -> list[str]:
    from django.core.cache import cache

    version = f"{endpoint.created_at.timestamp()}:{endpoint.rotated_at}:{endpoint.base_url}"
    key = f"ollama-tags:{endpoint.pk}:{hashlib.sha256(version.encode()).hexdigest()[:16]}"
    names = cache.get(key)
    if names is None:
        try:
            ssrf.check_url(endpoint.base_url)
            names = from_sync(
                ollama_tags, endpoint.base_url, secrets_of(endpoint).get("api_key", ""), read_timeout=3.0
            )
            cache.set(key, names, OLLAMA_TAGS_TTL)
        except (ProviderError, ssrf.BlockedAddress) as exc:
            log.info("ollama discovery skipped", extra={"credential_id": endpoint.pk, "reason": str(exc)})
            cache.set(key, [], OLLAMA_DOWN_TTL)
            return []
    return [f"ollama:{n}" if ":" in n else f"ollama:{n}:latest" for n in names if n]
