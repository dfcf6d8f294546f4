"""Migration 0004 run by Django's migration executor: it seeds the managed tiers and moves each tenant on an old
tenant-level plan (starter/pro/ultra) to `free` + that tier on its default agent and every active agent, keeps
(deactivated) the old plan rows, leaves other tenants alone, is idempotent, and its reverse restores the plans."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from billing.models import ManagedAgent, ManagedTier, Plan, Subscription
from tenants.audit import SYSTEM
from tenants.models import AuditEvent
from tenants.services import agent_create

pytestmark = pytest.mark.django_db

BEFORE = ("billing", "0003_managed_tiers")
MIGRATION = ("billing", "0004_managed_tiers_seed")


def _migrate(target: tuple[str, str]) -> None:
    MigrationExecutor(connection).migrate([target])


@pytest.fixture
def before():
    """A database as it was before 0004: tenant-level tiers, no managed tiers."""
    _migrate(BEFORE)
    yield
    _migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("billing")))


def _on_plan(tenant, slug: str, **fields) -> Subscription:
    return Subscription.objects.unscoped().create(tenant=tenant, plan=Plan.objects.get(slug=slug), **fields)


def _managed(tenant) -> set[tuple[str | None, str]]:
    rows = ManagedAgent.objects.unscoped().filter(tenant=tenant).select_related("agent", "tier")
    return {(r.agent.slug if r.agent else None, r.tier.slug) for r in rows if r.ended_at is None}


@pytest.fixture
def tenants(before, make_tenant):
    """Tenants as they were: two on old tiers (one with agents, one inactive), one free, one enterprise."""
    pro = make_tenant("oldpro")
    for slug in ("bot-a", "bot-b", "bot-off"):
        agent_create(tenant=pro, actor=SYSTEM, slug=slug, name=slug)
    from tenants.models import Agent

    Agent.objects.unscoped().filter(tenant=pro, slug="bot-off").update(is_active=False)
    _on_plan(pro, "pro", quantity=2, stripe_customer_id="cus_Old", stripe_subscription_id="sub_Old")
    starter = make_tenant("oldstarter")
    _on_plan(starter, "starter")
    free = make_tenant("freeco")
    agent_create(tenant=free, actor=SYSTEM, slug="bot", name="bot")
    _on_plan(free, "free")
    big = make_tenant("bigco")
    _on_plan(big, "enterprise")
    return {"pro": pro, "starter": starter, "free": free, "big": big}


def test_before_the_migration_tiers_are_tenant_plans(before):
    assert not ManagedTier.objects.exists()
    assert set(Plan.objects.filter(is_active=True).values_list("slug", flat=True)) >= {
        "starter",
        "pro",
        "ultra",
    }


def test_forward_moves_tenants_on_old_tiers_to_per_agent_tiers(tenants):
    _migrate(MIGRATION)
    pro = Subscription.objects.unscoped().select_related("plan").get(tenant=tenants["pro"])
    assert (pro.plan.slug, pro.quantity) == ("free", 1)
    assert (pro.stripe_customer_id, pro.stripe_subscription_id) == (
        "cus_Old",
        "sub_Old",
    )  # items sync fixes it
    assert _managed(tenants["pro"]) == {
        (None, "pro"),
        ("bot-a", "pro"),
        ("bot-b", "pro"),
    }  # not the inactive one
    starter = Subscription.objects.unscoped().select_related("plan").get(tenant=tenants["starter"])
    assert starter.plan.slug == "free"
    assert _managed(tenants["starter"]) == {(None, "starter")}
    for key, plan in (("free", "free"), ("big", "enterprise")):
        sub = Subscription.objects.unscoped().select_related("plan").get(tenant=tenants[key])
        assert sub.plan.slug == plan
        assert _managed(tenants[key]) == set()
    old = {p.slug: p for p in Plan.objects.filter(slug__in=["starter", "pro", "ultra"])}
    assert len(old) == 3  # kept: subscriptions reference plans with PROTECT
    assert not any(p.is_active for p in old.values())
    audit = AuditEvent.objects.unscoped().get(tenant=tenants["pro"], action="billing.managed.migrate")
    assert audit.changes == {"plan": ["pro", "free"], "tier": "pro", "agents": 2, "default_agent": True}


def test_forward_seeds_the_tiers(before):
    _migrate(MIGRATION)
    pro = ManagedTier.objects.get(slug="pro")
    assert (pro.name, pro.internal_name, pro.popular, pro.price_usd, pro.included_tokens) == (
        "Pro",
        "Standard",
        True,
        Decimal("10.00"),
        5_000_000,
    )
    assert pro.models == ["openai:gpt-4o-mini", "anthropic:claude-haiku-4.5"]
    assert list(ManagedTier.objects.values_list("slug", flat=True)) == ["starter", "pro", "ultra"]


def test_forward_is_idempotent_and_keeps_an_admins_tier_edits(tenants):
    _migrate(MIGRATION)
    ManagedTier.objects.filter(slug="pro").update(price_usd=Decimal("12.00"))
    before = _managed(tenants["pro"])
    importlib.import_module("billing.migrations.0004_managed_tiers_seed").forward(apps, None)
    assert _managed(tenants["pro"]) == before
    assert ManagedAgent.objects.unscoped().filter(tenant=tenants["pro"]).count() == 3
    assert ManagedTier.objects.get(slug="pro").price_usd == Decimal("12.00")


def test_reverse_puts_tenants_back_on_the_plan_of_their_highest_tier(tenants):
    _migrate(MIGRATION)
    bot = agent_create(tenant=tenants["starter"], actor=SYSTEM, slug="writer", name="writer")
    ManagedAgent.objects.unscoped().create(
        tenant=tenants["starter"], agent=bot, tier=ManagedTier.objects.get(slug="ultra")
    )
    _migrate(BEFORE)
    plans = dict(Subscription.objects.unscoped().values_list("tenant__slug", "plan__slug"))
    assert plans == {"oldpro": "pro", "oldstarter": "ultra", "freeco": "free", "bigco": "enterprise"}
    assert not ManagedAgent.objects.unscoped().exists()
    assert set(Plan.objects.filter(is_active=True).values_list("slug", flat=True)) >= {
        "starter",
        "pro",
        "ultra",
    }
