"""What `GET /v1/models` lists for a key: `default`, the tenant's routes, the catalog models it may call and the
models its Ollama servers have pulled (as `ollama:name:size`)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync

from tenants.models import Tenant

from .models import CatalogModel, Credential, Preferences, Route
from .resolution import models_q_agent

log = logging.getLogger(__name__)


def models_for_gateway(*, tenant_id: int, agent_id: int | None) -> list[str]:
    tenant = Tenant.objects.get(id=tenant_id)
    # Not `agent_id__in=[agent_id, None]`: SQL's IN never matches NULL, which would lose the tenant's row.
    prefs = {p.agent_id: p for p in Preferences.objects.unscoped().filter(tenant_id=tenant_id)
             .filter(models_q_agent(agent_id))}
    chosen = prefs.get(agent_id) or prefs.get(None)
    eu_only = tenant.eu_only or bool(chosen and chosen.eu_only)
    ids = ["default"]
    ids += [f"route:{name}" for name in Route.objects.unscoped().filter(tenant_id=tenant_id)
            .values_list("name", flat=True)]
    catalog = CatalogModel.objects.filter(enabled=True).exclude(provider_id="custom")
    if eu_only:
        catalog = catalog.filter(eu_hosted=True)
    ids += list(catalog.values_list("id", flat=True))
    if chosen is not None and chosen.mode == "custom" and chosen.model and chosen.model not in ids:
        ids.append(chosen.model)
    ids += [m for m in _ollama_models(tenant_id, eu_only=eu_only) if m not in ids]
    return ids


def _ollama_models(tenant_id: int, *, eu_only: bool) -> list[str]:
    """Ask each of the tenant's Ollama servers what it has pulled; a server that is down is left out (logged)."""
    from . import ssrf
    from .credentials import secrets_of
    from .providers import ProviderError
    from .providers.openai_compat import ollama_tags

    found: list[str] = []
    for endpoint in Credential.objects.unscoped().filter(tenant_id=tenant_id, kind="ollama").order_by("pk"):
        if eu_only and not (endpoint.config or {}).get("eu_hosted"):
            continue
        try:
            ssrf.check_url(endpoint.base_url)
            names = async_to_sync(ollama_tags)(endpoint.base_url, secrets_of(endpoint).get("api_key", ""),
                                               timeout=3.0)
        except (ProviderError, ssrf.BlockedAddress) as exc:
            log.info("ollama discovery skipped", extra={"credential_id": endpoint.pk, "reason": str(exc)})
            continue
        found += [f"ollama:{n}" if ":" in n else f"ollama:{n}:latest" for n in names if n]
    return sorted(set(found))
