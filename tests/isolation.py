"""The tenant-isolation harness every endpoint joins: tenant B gets 404 on A's objects and never lists them.

Add an `Endpoint` to ENDPOINTS for each new tenant-owned resource; tests/test_isolation.py runs them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenants.models import Tenant


@dataclass(frozen=True)
class Endpoint:
    name: str
    list_url: str | None
    # make(tenant) -> (detail_url, marker) where marker is a string that identifies A's object in any body.
    make: Callable[[Tenant], tuple[str, str]]
    update_body: dict[str, Any] | None = None
    update_method: str = "patch"
    can_delete: bool = True
    extra_urls: list[Callable[[str], str]] = field(default_factory=list)


ENDPOINTS: list[Endpoint] = []


def register(endpoint: Endpoint) -> Endpoint:
    ENDPOINTS.append(endpoint)
    return endpoint


# --- tenants app ---------------------------------------------------------------------------------

def _make_agent(tenant: Tenant) -> tuple[str, str]:
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    agent = agent_create(tenant=tenant, actor=SYSTEM, slug="secret-agent", name="Secret agent A")
    return f"/api/agents/{agent.slug}", "Secret agent A"


def _make_key(tenant: Tenant) -> tuple[str, str]:
    from tenants.audit import SYSTEM
    from tenants.keys import apikey_create

    key, _ = apikey_create(tenant=tenant, actor=SYSTEM, name="tenant-a-private-key", scopes=["gateway"])
    return f"/api/keys/{key.id}", "tenant-a-private-key"


def _make_audit(tenant: Tenant) -> tuple[str, str]:
    from tenants.audit import SYSTEM, audit_record

    audit_record(tenant=tenant, actor=SYSTEM, action="test.marker", object_repr="audit-marker-of-a")
    return "", "audit-marker-of-a"


register(Endpoint("agents", "/api/agents", _make_agent, update_body={"name": "hijacked"}))
register(Endpoint("keys", "/api/keys", _make_key, update_body=None))
register(Endpoint("audit", "/api/audit", _make_audit, update_body=None, can_delete=False))
