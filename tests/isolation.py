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
register(Endpoint("keys", "/api/keys", _make_key, update_body={"spend_limit_tcu": 1}))
register(Endpoint("audit", "/api/audit", _make_audit, update_body=None, can_delete=False))


# --- billing app ---------------------------------------------------------------------------------


def _make_notification(tenant: Tenant) -> tuple[str, str]:
    from billing.notifications import notification_create

    n = notification_create(tenant=tenant, title="notification-marker-of-a")
    return f"/api/billing/notifications/{n.pk}", "notification-marker-of-a"


def _make_agent_budget(tenant: Tenant) -> tuple[str, str]:
    from billing.caps import agent_budget_set
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    agent = agent_create(tenant=tenant, actor=SYSTEM, slug="budgeted-agent", name="Budgeted")
    agent_budget_set(tenant=tenant, actor=SYSTEM, agent=agent, monthly_tcu=424242)
    return f"/api/billing/agents/{agent.slug}/budget", "424242"


def _make_caps(tenant: Tenant) -> tuple[str, str]:
    from billing.caps import caps_update
    from tenants.audit import SYSTEM

    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=131313, hard_tcu=171717)
    return "", "171717"


def _make_agent_managed(tenant: Tenant) -> tuple[str, str]:
    from billing.managed import managed_set
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    agent = agent_create(tenant=tenant, actor=SYSTEM, slug="managed-agent-of-a", name="Managed")
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="pro")
    return f"/api/agents/{agent.slug}/managed", "managed-agent-of-a"


def _make_default_managed(tenant: Tenant) -> tuple[str, str]:
    from billing.managed import managed_set
    from tenants.audit import SYSTEM

    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="ultra")
    return "", '"tier":"ultra"'  # B's own default agent answers with its own tier (none)


register(
    Endpoint(
        "billing-agent-managed",
        None,
        _make_agent_managed,
        update_body={"tier": None},
        update_method="put",
        can_delete=False,
    )
)
register(Endpoint("billing-default-managed", "/api/managed", _make_default_managed, update_body=None))
register(
    Endpoint(
        "billing-notifications",
        "/api/billing/notifications",
        _make_notification,
        update_body=None,
        can_delete=False,
    )
)
register(
    Endpoint(
        "billing-agent-budget",
        None,
        _make_agent_budget,
        update_body={"monthly_tcu": 1},
        update_method="put",
        can_delete=False,
    )
)
register(Endpoint("billing-caps", "/api/billing/caps", _make_caps, update_body=None, can_delete=False))


# --- llm configuration ---------------------------------------------------------------------------


def _make_credential(tenant: Tenant) -> tuple[str, str]:
    from llm.config.credentials import credential_create
    from tenants.audit import SYSTEM
    from tests.llm_config.inputs import credential_input

    cred = credential_create(
        tenant=tenant,
        actor=SYSTEM,
        data=credential_input(
            tenant, kind="openai", name="cred-marker-of-a", api_key="sk-isolation-a-0000000"
        ),
    )
    return f"/api/llm/credentials/{cred.pk}", "cred-marker-of-a"


def _make_route(tenant: Tenant) -> tuple[str, str]:
    from llm.config.routes import route_create
    from tenants.audit import SYSTEM
    from tests.llm_config.inputs import route_input

    route = route_create(
        tenant=tenant,
        actor=SYSTEM,
        data=route_input(tenant, name="route_marker_of_a", targets=["openai:gpt-5-mini"]),
    )
    return f"/api/llm/routes/{route.pk}", "route_marker_of_a"


def _make_route_export(tenant: Tenant) -> tuple[str, str]:
    _make_route(tenant)
    return "", "route_marker_of_a"


def _save_custom_preferences(tenant: Tenant, agent=None, model: str = "prefs-marker-of-a") -> None:
    from llm.config.preferences import preferences_save
    from tenants.audit import SYSTEM
    from tests.llm_config.inputs import preferences_input

    preferences_save(
        tenant=tenant,
        agent=agent,
        actor=SYSTEM,
        data=preferences_input(
            tenant,
            agent,
            mode="custom",
            model=model,
            custom_endpoint={"kind": "openai_compatible", "base_url": "http://127.0.0.1:8000/v1"},
        ),
    )


def _make_preferences(tenant: Tenant) -> tuple[str, str]:
    _save_custom_preferences(tenant)
    return "", "prefs-marker-of-a"


def _make_agent_preferences(tenant: Tenant) -> tuple[str, str]:
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    agent = agent_create(tenant=tenant, actor=SYSTEM, slug="prefs-agent", name="Prefs agent")
    _save_custom_preferences(tenant, agent, model="agent-prefs-marker-of-a")
    return "/api/llm/preferences?agent=prefs-agent", "agent-prefs-marker-of-a"


register(
    Endpoint("llm-credentials", "/api/llm/credentials", _make_credential, update_body={"name": "hijacked"})
)
register(Endpoint("llm-routes", "/api/llm/routes", _make_route, update_body={"description": "hijacked"}))
register(
    Endpoint(
        "llm-routes-export", "/api/llm/routes/export", _make_route_export, update_body=None, can_delete=False
    )
)
register(
    Endpoint("llm-preferences", "/api/llm/preferences", _make_preferences, update_body=None, can_delete=False)
)
register(
    Endpoint(
        "llm-agent-preferences",
        None,
        _make_agent_preferences,
        update_body={"model": "hijacked"},
        update_method="post",
    )
)


# --- batch jobs ----------------------------------------------------------------------------------


def _make_job(tenant: Tenant) -> tuple[str, str]:
    from llm.models import Job

    job = Job.objects.unscoped().create(tenant=tenant, model="job-marker-of-a", total=0, status="queued")
    return f"/api/llm/jobs/{job.id}", "job-marker-of-a"


register(Endpoint("llm-jobs", "/api/llm/jobs", _make_job, update_body=None))
