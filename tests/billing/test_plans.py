"""Plans: the seeded plans, assign_plan and what a plan allows."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.caps import limits_for
from billing.models import Plan, Subscription
from billing.plans import UnknownPlanError, assign_plan, plan_allows_platform
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_plans_are_seeded_with_the_managed_tiers():
    plans = {p.slug: p for p in Plan.objects.all()}
    assert {"free", "starter", "pro", "ultra", "enterprise"} <= set(plans)
    assert [plans[s].name for s in ("starter", "pro", "ultra")] == ["Economy", "Standard", "Premium"]
    assert [plans[s].price_per_agent_usd for s in ("starter", "pro", "ultra")] == [
        Decimal(5),
        Decimal(10),
        Decimal(20),
    ]
    assert [plans[s].included_tokens for s in ("starter", "pro", "ultra")] == [
        2_000_000,
        5_000_000,
        10_000_000,
    ]
    assert [plans[s].overage_usd_per_mtok for s in ("starter", "pro", "ultra")] == [
        Decimal(2),
        Decimal(3),
        Decimal(5),
    ]
    assert all(plans[s].platform_allowed and plans[s].tier == s for s in ("starter", "pro", "ultra"))
    assert all(plans[s].tier_models for s in ("starter", "pro", "ultra"))


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


def test_assign_plan_to_a_managed_tier_allows_platform_mode(tenant):
    assign_plan(tenant=tenant, plan_slug="pro")
    assert plan_allows_platform(tenant)
    assert limits_for(tenant.id).tier == "pro"


def test_assign_plan_unknown_slug_is_a_clear_error(tenant):
    with pytest.raises(ValueError, match=r"Unknown plan “gold”.*free"):
        assign_plan(tenant=tenant, plan_slug="gold")
    with pytest.raises(UnknownPlanError):
        assign_plan(tenant=tenant, plan_slug="gold")


def test_createtenant_assigns_the_plan(db):
    call_command(
        "createtenant", "initech", "--owner", "boss@initech.example", "--plan", "starter", stdout=StringIO()
    )
    tenant = Tenant.objects.get(slug="initech")
    assert Subscription.objects.unscoped().get(tenant=tenant).plan.slug == "starter"


def test_createtenant_without_plan_is_free_and_unknown_plan_fails(db):
    call_command("createtenant", "hooli", "--owner", "gavin@hooli.example", stdout=StringIO())
    assert Subscription.objects.unscoped().get(tenant__slug="hooli").plan.slug == "free"
    with pytest.raises(CommandError, match="Unknown plan"):
        call_command(
            "createtenant", "piedpiper", "--owner", "r@pp.example", "--plan", "gold", stdout=StringIO()
        )
    assert not Tenant.objects.filter(slug="piedpiper").exists()
