"""Plans and tiers: the seeded workspace plans and managed tiers, assign_plan and what a plan allows."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.caps import limits_for
from billing.models import ManagedAgent, ManagedTier, Plan, Subscription
from billing.plans import UnknownPlanError, assign_plan, plan_allows_platform, plan_choices
from llm.config.catalog import get_catalog
from tenants.models import Tenant

pytestmark = pytest.mark.django_db
TIERS = ("starter", "pro", "ultra")


def test_the_managed_tiers_are_seeded_per_agent():
    tiers = {t.slug: t for t in ManagedTier.objects.all()}
    assert [tiers[s].name for s in TIERS] == ["Starter", "Pro", "Ultra"]
    assert [tiers[s].internal_name for s in TIERS] == ["Economy", "Standard", "Premium"]
    assert tiers["starter"].description == "Fast & affordable. Perfect for simple tasks (FAQ, email replies)"
    assert tiers["pro"].description == "Smarter responses. Great for content, research, analysis"
    assert tiers["ultra"].description == "Most powerful. For complex tasks (coding, deep research, strategy)"
    assert [tiers[s].popular for s in TIERS] == [False, True, False]
    assert [tiers[s].price_usd for s in TIERS] == [Decimal(5), Decimal(10), Decimal(20)]
    assert [tiers[s].included_tokens for s in TIERS] == [2_000_000, 5_000_000, 10_000_000]
    assert [tiers[s].overage_usd_per_mtok for s in TIERS] == [Decimal(2), Decimal(3), Decimal(5)]
    assert [tiers[s].models for s in TIERS] == [
        ["minimax:minimax-m2.5", "mistral:mistral-small"],
        ["openai:gpt-4o-mini", "anthropic:claude-haiku-4.5"],
        ["anthropic:claude-sonnet-4", "openai:gpt-4o"],
    ]
    catalog = get_catalog()
    for tier in tiers.values():  # every backend model is in the catalog, priced
        for model_id in tier.models:
            info = catalog.model(model_id)
            assert info is not None, model_id
            assert info.input_usd_per_mtok is not None, model_id
            assert info.output_usd_per_mtok is not None, model_id


def test_the_old_tenant_level_tiers_are_kept_but_inactive():
    plans = {p.slug: p for p in Plan.objects.all()}
    assert {"free", "starter", "pro", "ultra", "enterprise"} <= set(plans)
    assert not any(plans[s].is_active for s in TIERS)
    assert set(plan_choices()) == {"free", "enterprise"}
    assert plan_choices(public_only=True) == ["free"]


def test_free_is_byok_only_with_at_least_60_rpm_and_20_concurrent():
    free = Plan.objects.get(slug="free")
    assert not free.platform_allowed
    assert free.rpm_tenant >= 60
    assert free.rpm_key >= 60
    assert free.max_concurrency >= 20


def test_enterprise_has_no_request_limits():
    ent = Plan.objects.get(slug="enterprise")
    assert ent.platform_allowed
    assert (ent.rpm_tenant, ent.rpm_key, ent.max_concurrency, ent.monthly_request_cap) == (
        None,
        None,
        None,
        None,
    )


def test_the_beat_schedule_is_seeded_and_editable_in_the_database():
    from django_celery_beat.models import PeriodicTask

    tasks = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {"billing.run_billing_cycle", "billing.reconcile"} <= tasks


def test_assign_plan_none_puts_the_tenant_on_free(tenant):
    sub = assign_plan(tenant=tenant, plan_slug=None)
    assert sub.plan.slug == "free"
    assert Subscription.objects.unscoped().filter(tenant=tenant).count() == 1
    assert not plan_allows_platform(tenant)


def test_assign_plan_enterprise_allows_platform_mode_and_a_retired_plan_is_unknown(tenant):
    assign_plan(tenant=tenant, plan_slug="enterprise")
    assert plan_allows_platform(tenant)
    assert limits_for(tenant.id).plan == "enterprise"
    with pytest.raises(UnknownPlanError, match="Unknown plan “pro”"):
        assign_plan(tenant=tenant, plan_slug="pro")  # a managed tier now, per agent


def test_assign_plan_unknown_slug_is_a_clear_error(tenant):
    with pytest.raises(ValueError, match=r"Unknown plan “gold”.*free"):
        assign_plan(tenant=tenant, plan_slug="gold")
    with pytest.raises(UnknownPlanError):
        assign_plan(tenant=tenant, plan_slug="gold")


def test_createtenant_with_a_tier_manages_the_default_agent(db):
    call_command(
        "createtenant", "initech", "--owner", "boss@initech.example", "--plan", "starter", stdout=StringIO()
    )
    tenant = Tenant.objects.get(slug="initech")
    sub = Subscription.objects.unscoped().get(tenant=tenant)
    assert sub.plan.slug == "free"  # the workspace plan
    row = ManagedAgent.objects.unscoped().get(tenant=tenant)
    assert (row.agent, row.tier.slug) == (None, "starter")
    assert sub.stripe_customer_id == ""  # Stripe is not configured here (see test_managed.py for it)


def test_createtenant_without_plan_is_free_and_unknown_plan_fails(db):
    call_command("createtenant", "hooli", "--owner", "gavin@hooli.example", stdout=StringIO())
    assert Subscription.objects.unscoped().get(tenant__slug="hooli").plan.slug == "free"
    with pytest.raises(CommandError, match="Unknown plan"):
        call_command(
            "createtenant", "piedpiper", "--owner", "r@pp.example", "--plan", "gold", stdout=StringIO()
        )
    assert not Tenant.objects.filter(slug="piedpiper").exists()
