"""Managed LLM per agent: put an agent (or the workspace's default agent) on a managed tier or take it off, and
who is on which tier. Local writes only: Stripe follows through the subscription items sync (a Celery task)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing import caps
from billing.models import ManagedAgent, ManagedTier
from billing.subscriptions import (
    ensure_subscription,
    get_tier,
    live_managed,
    managed_rows,
    managed_tier_counts,
    tier_choices,
)
from llm.config.catalog import get_catalog
from tenants.audit import Actor, audit_record
from tenants.models import Agent, Tenant

log = logging.getLogger(__name__)

DEFAULT_AGENT = "default"  # how the workspace's default agent is named in audit records and API bodies


def managed_for(tenant: Tenant) -> list[ManagedAgent]:
    """The tenant's managed agents (the default agent first), with their tier and agent loaded."""
    return managed_rows(tenant)


def managed_agents_by_tier(tenant: Tenant) -> dict[str, int]:
    """Managed agents per tier slug, e.g. {"pro": 2, "starter": 1}: the Stripe items' quantities."""
    return managed_tier_counts(tenant)


def unmanaged_agents(tenant: Tenant) -> list[dict[str, Any]]:
    """The workspace's default agent (slug None) when it is not managed, then its active agents on no managed tier:
    what the usage page lists as calling with the workspace's own keys, which we never bill."""
    rows = live_managed(tenant)
    managed_ids = rows.filter(agent__isnull=False).values("agent_id")
    agents = (
        Agent.objects.for_tenant(tenant).filter(is_active=True).exclude(pk__in=managed_ids).order_by("slug")
    )
    out: list[dict[str, Any]] = []
    if not rows.filter(agent__isnull=True).exists():
        out.append({"agent": None, "agent_name": "Workspace default (calls without an agent)"})
    out += [{"agent": a.slug, "agent_name": a.name} for a in agents]
    return out


def managed_get(*, tenant: Tenant, agent: Agent | None) -> ManagedAgent | None:
    """The agent's live row (None: the default agent's), or None when it is not managed."""
    qs = live_managed(tenant).select_related("tier")
    return (qs.filter(agent=agent) if agent is not None else qs.filter(agent__isnull=True)).first()


def tier_json(tier: ManagedTier) -> dict[str, Any]:
    """A tier as customers see it: no model names."""
    return {
        "slug": tier.slug,
        "name": tier.name,
        "description": tier.description,
        "popular": tier.popular,
        "price_usd": f"{tier.price_usd:.2f}",
        "included_tokens": tier.included_tokens,
        "overage_usd_per_mtok": f"{tier.overage_usd_per_mtok:.2f}",
    }


def managed_read(*, tenant: Tenant, agent: Agent | None) -> dict[str, Any]:
    """What `GET /api/agents/{slug}/managed` and `GET /api/managed` answer."""
    row = managed_get(tenant=tenant, agent=agent)
    return {
        "agent": agent.slug if agent is not None else None,
        "tier": row.tier.slug if row else None,
        "enabled_at": row.enabled_at.isoformat() if row else None,
        "tiers": [tier_json(t) for t in ManagedTier.objects.filter(is_active=True)],
    }


def tier_for_choice(tier_slug: Any, *, offered_only: bool = True) -> ManagedTier | None:
    """The tier a body names (None = managed LLM off), among those on offer unless `offered_only` is off (an
    operator may keep or give a retired tier); a field error otherwise."""
    if tier_slug is None:
        return None
    tier = None
    if isinstance(tier_slug, str):
        tier = (
            get_tier(tier_slug)
            if offered_only
            else ManagedTier.objects.filter(slug=tier_slug.strip().lower()).first()
        )
    if tier is None:
        shown = str(tier_slug)[:40]
        raise ValidationError(
            {
                "tier": [
                    f"Unknown tier “{shown}”. Choose one of: {', '.join(tier_choices())}, "
                    "or null to turn managed LLM off."
                ]
            }
        )
    return tier


def tier_models_validate(value: Any) -> list[str]:
    """A tier's backend models as admins enter them: a non-empty list of catalog ids, each enabled and priced
    (a managed call is metered and billed at the catalog's price). Returns the list or raises ValidationError."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValidationError(
            'Enter a list of catalog ids, e.g. ["openai:gpt-4o-mini"]; the first is the default.'
        )
    if len(set(value)) != len(value):
        raise ValidationError("Each model once.")
    catalog = get_catalog()
    errors = []
    for model_id in value:
        info = catalog.model(model_id)
        if info is None:
            errors.append(f"“{model_id[:100]}” is not in the catalog.")
        elif info.input_usd_per_mtok is None or info.output_usd_per_mtok is None:
            errors.append(f"“{model_id}” has no price in the catalog; set its prices first.")
        elif not info.enabled:
            errors.append(f"“{model_id}” is disabled in the catalog.")
    if errors:
        raise ValidationError(errors)
    return list(value)


def managed_set(
    *, tenant: Tenant, actor: Actor, agent: Agent | None, tier_slug: str | None
) -> ManagedAgent | None:
    """Put `agent` (None: the workspace's default agent) on a managed tier, or take it off (`tier_slug` None).

    Audited; the tenant's cached limits and managed access are dropped, and the Stripe items sync is scheduled
    (by task name) for after the commit. No payment is asked for here: users go through
    `billing.plans.managed_change`; operators (createtenant, admin) and webhooks call this directly.
    """
    tier = tier_for_choice(tier_slug, offered_only=False)
    if agent is not None and agent.tenant_id != tenant.id:
        raise ValidationError({"agent": ["No such agent."]})
    if agent is not None and tier is not None and not agent.is_active:
        raise ValidationError(
            {"agent": ["This agent is inactive; activate it before turning managed LLM on."]}
        )
    with transaction.atomic():
        ensure_subscription(tenant)  # the row billing (cycle, reconciliation) walks
        current = managed_get(tenant=tenant, agent=agent)
        before = current.tier.slug if current else None
        if before == (tier.slug if tier else None):
            return current
        if tier is None:
            if current is not None:  # ended, not deleted: this period's overage still counts it
                current.ended_at = timezone.now()
                current.save(update_fields=["ended_at"])
            row = None
        elif current is None:
            row = ManagedAgent.objects.for_tenant(tenant).create(agent=agent, tier=tier)
        else:
            current.tier = tier
            current.save(update_fields=["tier"])
            row = current
        audit_record(
            tenant=tenant,
            actor=actor,
            action="billing.managed.set" if tier else "billing.managed.end",
            obj=agent,
            object_type="agent",
            object_id=str(agent.pk) if agent else DEFAULT_AGENT,
            object_repr=agent.slug if agent else "workspace default agent",
            changes={"tier": [before, tier.slug if tier else None]},
        )
        transaction.on_commit(partial(caps.invalidate, tenant.id))
        transaction.on_commit(partial(schedule_items_sync, tenant.id))
    caps.invalidate(tenant.id)
    return row


def managed_end_all(*, tenant: Tenant, actor: Actor) -> int:
    """Take every agent of the tenant off managed LLM (its paying subscription ended); returns how many."""
    rows = managed_rows(tenant)
    for row in rows:
        managed_set(tenant=tenant, actor=actor, agent=row.agent, tier_slug=None)
    return len(rows)


def schedule_items_sync(tenant_id: int) -> None:
    """Queue the Stripe items sync (quantity per tier); by name, as billing's lower modules enqueue its tasks."""
    try:
        current_app.tasks["billing.sync_subscription_quantity"].delay(tenant_id)
    except Exception:  # eager mode surfaces Stripe trouble here; reconciliation repairs item drift nightly
        log.warning("subscription items sync for tenant %s failed", tenant_id, exc_info=True)
