"""What `GET /v1/models` lists for a key: `default`, the tenant's routes, the catalog models it may call and the
models its Ollama servers have pulled (as `ollama:name:size`)."""

from __future__ import annotations

import hashlib
import logging

from llm.calls.resolution import models_q_agent
from llm.config import ssrf
from llm.config.credentials import secrets_of
from llm.models import CatalogModel, Credential, Preferences, Route
from llm.providers import ProviderError
from llm.providers.openai_compat import ollama_tags
from llm.sync import from_sync
from tenants.models import Tenant

log = logging.getLogger(__name__)


def models_for_gateway(*, tenant_id: int, agent_id: int | None) -> list[str]:
    tenant = Tenant.objects.get(id=tenant_id)
    # Not `agent_id__in=[agent_id, None]`: SQL's IN never matches NULL, which would lose the tenant's row.
    prefs = {
        p.agent_id: p for p in Preferences.objects.for_tenant(tenant_id).filter(models_q_agent(agent_id))
    }
    chosen = prefs.get(agent_id) or prefs.get(None)
    eu_only = tenant.eu_only or bool(chosen and chosen.eu_only)
    ids = ["default"]
    ids += [f"route:{name}" for name in Route.objects.for_tenant(tenant_id).values_list("name", flat=True)]
    catalog = CatalogModel.objects.filter(enabled=True).exclude(provider_id="custom")
    if eu_only:
        catalog = catalog.filter(eu_hosted=True)
    ids += list(catalog.values_list("id", flat=True))
    if chosen is not None and chosen.mode == "custom" and chosen.model and chosen.model not in ids:
        ids.append(chosen.model)
    ids += [m for m in _ollama_models(tenant_id, eu_only=eu_only) if m not in ids]
    return ids


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
