"""What `GET /v1/models` lists for a key: `default`, the tenant's routes and the catalog models it may call."""

from __future__ import annotations

from tenants.models import Tenant

from .models import CatalogModel, Preferences, Route


def models_for_gateway(*, tenant_id: int, agent_id: int | None) -> list[str]:
    tenant = Tenant.objects.get(id=tenant_id)
    prefs = {p.agent_id: p for p in Preferences.objects.unscoped().filter(tenant_id=tenant_id,
                                                                          agent_id__in=[agent_id, None])}
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
    return ids
