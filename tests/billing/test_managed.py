"""Managed LLM per agent through the public surface: the API, Stripe (localstripe, several items), createtenant,
the billing cycle, reconciliation, the admin, and what llm's policy answers."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from billing.models import LedgerEntry, ManagedAgent, ManagedTier, Subscription
from billing.stripe.reconciliation import reconcile
from billing.usage import period_of
from llm.policy import ManagedAccess, policy
from tenants.audit import SYSTEM
from tenants.models import AuditEvent, Membership, Tenant
from tenants.services import agent_create, agent_update

from .conftest import attach_card, make_managed_paid, make_usage, remote_items

pytestmark = pytest.mark.django_db

PRO = "byok-tier-pro-1000-usd-month"
STARTER = "byok-tier-starter-500-usd-month"
ULTRA = "byok-tier-ultra-2000-usd-month"


def _owner(tenant) -> APIClient:
    client = APIClient()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant, role="owner").user)
    return client


def _sub(tenant) -> Subscription:
    return Subscription.objects.unscoped().get(tenant=tenant)


def _put(client, url: str, tier):
    return client.put(url, {"tier": tier}, format="json")


# --- the API ----------------------------------------------------------------------------------------------


def test_an_agent_is_not_managed_until_turned_on_and_the_offer_names_no_model(tenant, agent, manage_client):
    body = manage_client.get(f"/api/agents/{agent.slug}/managed").json()
    assert (body["agent"], body["tier"], body["enabled_at"]) == ("support-bot", None, None)
    assert [(t["slug"], t["name"], t["price_usd"], t["popular"]) for t in body["tiers"]] == [
        ("starter", "Starter", "5.00", False),
        ("pro", "Pro", "10.00", True),
        ("ultra", "Ultra", "20.00", False),
    ]
    assert (
        body["tiers"][0]["description"] == "Fast & affordable. Perfect for simple tasks (FAQ, email replies)"
    )
    assert body["tiers"][1]["included_tokens"] == 5_000_000
    text = json.dumps(body)
    assert "gpt" not in text
    assert "claude" not in text
    assert "Economy" not in text  # internal names stay inside
    assert manage_client.get("/api/managed").json()["agent"] is None


def test_bad_bodies_are_field_errors_and_change_nothing(tenant, agent, manage_client):
    url = f"/api/agents/{agent.slug}/managed"
    unknown = _put(manage_client, url, "gold")
    assert unknown.status_code == 400
    assert "Unknown tier “gold”" in unknown.json()["tier"][0]
    assert manage_client.put(url, {}, format="json").json() == {
        "tier": ["This field is required (null turns managed LLM off)."]
    }
    assert manage_client.put(url, {"tier": None, "model": "x"}, format="json").status_code == 400
    assert _put(manage_client, url, ["pro"]).status_code == 400
    assert manage_client.get("/api/agents/no-such-agent/managed").status_code == 404
    assert not ManagedAgent.objects.unscoped().exists()


def test_turning_it_on_without_stripe_configured_is_a_clear_error(tenant, agent, manage_client):
    response = _put(manage_client, f"/api/agents/{agent.slug}/managed", "pro")
    assert response.status_code == 400
    assert response.json()["code"] == "billing_not_configured"
    assert not ManagedAgent.objects.unscoped().exists()


def test_a_card_on_file_starts_one_subscription_with_one_item_per_tier(
    tenant, agent, stripe, django_capture_on_commit_callbacks
):
    writer = agent_create(tenant=tenant, actor=SYSTEM, slug="writer", name="Writer")
    attach_card(tenant)
    client = _owner(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        first = _put(client, f"/api/agents/{agent.slug}/managed", "pro")
    assert first.status_code == 200, first.content
    assert (first.json()["tier"], first.json()["checkout_url"]) == ("pro", None)
    sub = _sub(tenant)
    assert (sub.plan.slug, sub.status) == ("free", "active")  # the workspace plan is unchanged
    assert remote_items(stripe, tenant) == {PRO: 1}
    invoices = stripe.v1.invoices.list(params={"customer": sub.stripe_customer_id}).data
    assert [i.amount_paid for i in invoices] == [1000]  # charged now, before it applies

    with django_capture_on_commit_callbacks(execute=True):
        assert _put(client, f"/api/agents/{writer.slug}/managed", "pro").status_code == 200
        assert _put(client, "/api/managed", "starter").status_code == 200
    assert _sub(tenant).stripe_subscription_id == sub.stripe_subscription_id  # the same subscription
    assert remote_items(stripe, tenant) == {PRO: 2, STARTER: 1}

    with django_capture_on_commit_callbacks(execute=True):
        moved = _put(client, f"/api/agents/{writer.slug}/managed", "ultra")
    assert moved.json()["tier"] == "ultra"
    assert remote_items(stripe, tenant) == {PRO: 1, STARTER: 1, ULTRA: 1}
    actions = list(
        AuditEvent.objects.unscoped()
        .filter(tenant=tenant, action__startswith="billing.managed")
        .order_by("id")
        .values_list("object_repr", "changes")
    )
    assert actions == [
        ("support-bot", {"tier": [None, "pro"]}),
        ("writer", {"tier": [None, "pro"]}),
        ("workspace default agent", {"tier": [None, "starter"]}),
        ("writer", {"tier": ["pro", "ultra"]}),
    ]


def test_turning_agents_off_lowers_the_quantity_then_cancels(
    tenant, agent, stripe, django_capture_on_commit_callbacks
):
    make_managed_paid(tenant, "pro", agent=agent)
    with django_capture_on_commit_callbacks(execute=True):
        make_managed_paid(tenant, "pro")  # the default agent too
    sub_id = _sub(tenant).stripe_subscription_id
    assert remote_items(stripe, tenant) == {PRO: 2}
    client = _owner(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        off = _put(client, "/api/managed", None)
    assert (off.status_code, off.json()["tier"]) == (200, None)
    assert remote_items(stripe, tenant) == {PRO: 1}
    make_usage(tenant, tokens=6_000_000, agent=agent)  # 1M over: on the final invoice
    with django_capture_on_commit_callbacks(execute=True):
        _put(client, f"/api/agents/{agent.slug}/managed", None)
    assert stripe.v1.subscriptions.retrieve(sub_id).status == "canceled"
    assert _sub(tenant).stripe_subscription_id == ""
    entry = LedgerEntry.objects.unscoped().get(tenant=tenant)
    assert (entry.amount_cents, entry.state) == (300, "pushed")


def test_deactivating_or_deleting_an_agent_ends_its_tier(
    tenant, agent, stripe, django_capture_on_commit_callbacks
):
    from tenants.services import agent_delete

    writer = agent_create(tenant=tenant, actor=SYSTEM, slug="writer", name="Writer")
    with django_capture_on_commit_callbacks(execute=True):
        for a in (agent, writer):
            make_managed_paid(tenant, "pro", agent=a)
    assert remote_items(stripe, tenant) == {PRO: 2}
    with django_capture_on_commit_callbacks(execute=True):
        agent_update(agent=agent, actor=SYSTEM, is_active=False)
    assert remote_items(stripe, tenant) == {PRO: 1}
    assert policy().managed_access(tenant.id, agent.id) is None
    with django_capture_on_commit_callbacks(execute=True):
        agent_delete(agent=writer, actor=SYSTEM)
    assert not ManagedAgent.objects.unscoped().filter(tenant=tenant, ended_at__isnull=True).exists()
    assert _sub(tenant).stripe_subscription_id == ""  # nothing billed any more: cancelled
    ended = AuditEvent.objects.unscoped().filter(tenant=tenant, action="billing.managed.end")
    assert sorted(ended.values_list("object_repr", flat=True)) == ["support-bot", "writer"]


def test_an_inactive_agent_cannot_be_turned_on(tenant, agent, manage_client, stripe):
    agent_update(agent=agent, actor=SYSTEM, is_active=False)
    response = _put(manage_client, f"/api/agents/{agent.slug}/managed", "pro")
    assert response.status_code == 400
    assert "inactive" in response.json()["agent"][0]


def test_choosing_the_free_plan_keeps_the_subscription_that_bills_the_tiers(tenant, stripe, paid_plans):
    from billing.plans import plan_change

    make_managed_paid(tenant, "pro")
    plan_change(tenant=tenant, actor=SYSTEM, plan_slug="team")
    assert remote_items(stripe, tenant) == {PRO: 1, "byok-team-agent-1000-usd-month": 1}
    plan_change(tenant=tenant, actor=SYSTEM, plan_slug="free")
    sub = _sub(tenant)
    assert sub.plan.slug == "free"
    assert stripe.v1.subscriptions.retrieve(sub.stripe_subscription_id).status == "active"
    assert remote_items(stripe, tenant) == {PRO: 1}


# --- what llm's policy answers -----------------------------------------------------------------------------


def test_managed_access_names_the_tier_models_and_is_cached(tenant, agent, django_assert_num_queries):
    from billing.managed import managed_set

    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="starter")
    access = policy().managed_access(tenant.id, agent.id)
    assert access == ManagedAccess(
        tier="starter", name="Starter", models=("minimax:minimax-m2.5", "mistral:mistral-small")
    )
    assert policy().managed_access(tenant.id, None) is None  # the default agent is not managed
    with django_assert_num_queries(0):
        assert policy().managed_access(tenant.id, agent.id).tier == "starter"
        assert policy().tiers_allowing("openai:gpt-4o") == ("Ultra",)
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="pro")
    assert policy().managed_access(tenant.id, None).models[0] == "openai:gpt-4o-mini"


def test_tiers_allowing_follows_an_admin_edit(tenant, admin_client):
    assert policy().tiers_allowing("anthropic:claude-haiku-4.5") == ("Pro",)
    assert policy().tiers_allowing("openai:gpt-5") == ()
    pro = ManagedTier.objects.get(slug="pro")
    form = {
        "name": "Pro",
        "internal_name": "Standard",
        "description": pro.description,
        "popular": "on",
        "sort_order": 20,
        "is_active": "on",
        "price_usd": "10.00",
        "included_tokens": 5_000_000,
        "overage_usd_per_mtok": "3.00",
        "models": json.dumps(
            ["openai:gpt-4o-mini", "anthropic:claude-haiku-4.5", "anthropic:claude-sonnet-4"]
        ),
    }
    response = admin_client.post(f"/admin/billing/managedtier/{pro.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert policy().tiers_allowing("anthropic:claude-sonnet-4") == ("Pro", "Ultra")


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["openai:gpt-4o-mini", "openai:no-such-model"], "is not in the catalog"),
        ("openai:gpt-4o", "Enter a list of catalog ids"),
        (["openai:gpt-4o-mini", "openai:gpt-4o-mini"], "Each model once"),
    ],
)
def test_the_admin_refuses_tier_models_the_catalog_cannot_serve(admin_client, models, message):
    pro = ManagedTier.objects.get(slug="pro")
    form = {
        "name": "Pro",
        "description": pro.description,
        "sort_order": 20,
        "is_active": "on",
        "price_usd": "10.00",
        "included_tokens": 5_000_000,
        "overage_usd_per_mtok": "3.00",
        "models": json.dumps(models),
    }
    response = admin_client.post(f"/admin/billing/managedtier/{pro.pk}/change/", form)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert ManagedTier.objects.get(slug="pro").models == ["openai:gpt-4o-mini", "anthropic:claude-haiku-4.5"]


def test_the_admin_refuses_an_unpriced_model(admin_client):
    from llm.config.versions import bump_config_version
    from llm.models import CatalogModel

    CatalogModel.objects.filter(pk="openai:gpt-4o").update(input_usd_per_mtok=None)
    bump_config_version()  # what a catalog edit does: the cached catalog is stale
    ultra = ManagedTier.objects.get(slug="ultra")
    form = {
        "name": "Ultra",
        "description": ultra.description,
        "sort_order": 30,
        "is_active": "on",
        "price_usd": "20.00",
        "included_tokens": 10_000_000,
        "overage_usd_per_mtok": "5.00",
        "models": json.dumps(["openai:gpt-4o"]),
    }
    response = admin_client.post(f"/admin/billing/managedtier/{ultra.pk}/change/", form)
    assert "has no price in the catalog" in response.content.decode()


def test_an_operator_puts_an_agent_on_a_tier_in_the_admin(tenant, agent, admin_client):
    pro = ManagedTier.objects.get(slug="pro")
    response = admin_client.post(
        "/admin/billing/managedagent/add/", {"tenant": tenant.pk, "agent": agent.pk, "tier": pro.pk}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert policy().managed_access(tenant.id, agent.id).tier == "pro"
    assert AuditEvent.objects.unscoped().filter(tenant=tenant, action="billing.managed.set").exists()


def test_the_admin_refuses_another_tenants_agent(tenant, other_tenant, admin_client):
    theirs = agent_create(tenant=other_tenant, actor=SYSTEM, slug="theirs", name="Theirs")
    pro = ManagedTier.objects.get(slug="pro")
    response = admin_client.post(
        "/admin/billing/managedagent/add/", {"tenant": tenant.pk, "agent": theirs.pk, "tier": pro.pk}
    )
    assert response.status_code == 200
    assert "belongs to another tenant" in response.content.decode()
    assert not ManagedAgent.objects.unscoped().exists()


def test_a_payment_overdue_past_the_grace_pauses_the_tier(tenant, agent, settings):
    from datetime import timedelta

    from django.utils import timezone

    from billing.caps import invalidate
    from billing.managed import managed_set

    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="pro")
    assert policy().managed_access(tenant.id, agent.id).blocked_reason == ""
    Subscription.objects.unscoped().filter(tenant=tenant).update(
        status="past_due", past_due_since=timezone.now() - timedelta(days=settings.BILLING_GRACE_DAYS + 1)
    )
    invalidate(tenant.id)
    reason = policy().managed_access(tenant.id, agent.id).blocked_reason
    assert "overdue" in reason
    assert "BYOK" in reason


# --- createtenant, the billing cycle, reconciliation ----------------------------------------------------


def _cycle() -> dict:
    out = StringIO()
    call_command("run_billing_cycle", "--period", period_of(), stdout=out)
    return json.loads(out.getvalue())


def _overage_items(stripe, tenant) -> list[dict]:
    customer = _sub(tenant).stripe_customer_id
    items = [i.to_dict() for i in stripe.v1.invoice_items.list(params={"customer": customer}).data]
    return [i for i in items if (i.get("metadata") or {}).get("ledger_key")]


def test_createtenant_with_a_tier_is_billed_like_any_paying_tenant(
    stripe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        out = StringIO()
        call_command(
            "createtenant", "initech", "--owner", "boss@initech.example", "--plan", "pro", stdout=out
        )
    assert out.getvalue().strip() == "initech"
    tenant = Tenant.objects.get(slug="initech")
    sub = _sub(tenant)
    assert sub.plan.slug == "free"
    assert sub.stripe_customer_id
    assert stripe.v1.customers.retrieve(sub.stripe_customer_id).metadata["tenant"] == "initech"
    remote = stripe.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert remote.status == "active"
    assert remote.collection_method == "send_invoice"  # no card: Stripe sends the invoice
    assert remote_items(stripe, tenant) == {PRO: 1}
    assert len(stripe.v1.subscriptions.list(params={"customer": sub.stripe_customer_id}).data) == 1

    make_usage(tenant, tokens=5_500_000)  # the default agent: 0.5M over Pro's 5M at $3
    first = _cycle()
    assert first["pushes"] == {"created": 1}
    assert [i["amount"] for i in _overage_items(stripe, tenant)] == [150]


def test_the_scenario_two_agents_one_on_pro_past_its_allowance(
    make_tenant, stripe, django_capture_on_commit_callbacks
):
    """The issue's "done when": two agents, one managed at Pro, used past 5M; the cycle twice; the items, the one
    overage item and the summary agree; the BYOK agent's own-key usage never counts."""
    tenant = make_tenant("smallbiz")
    bot = agent_create(tenant=tenant, actor=SYSTEM, slug="support-bot", name="Support bot")
    byok = agent_create(tenant=tenant, actor=SYSTEM, slug="byok-bot", name="BYOK bot")
    with django_capture_on_commit_callbacks(execute=True):
        make_managed_paid(tenant, "pro", agent=bot)
    make_usage(tenant, tokens=6_200_000, agent=bot)
    make_usage(tenant, tokens=40_000_000, agent=byok, mode="byok")

    first, second = _cycle(), _cycle()
    assert first["pushes"] == {"created": 1}
    assert second["pushes"] == {"unchanged": 1}
    assert second["reconciliation"]["issues_found"] == 0
    assert remote_items(stripe, tenant) == {PRO: 1}
    items = _overage_items(stripe, tenant)
    assert len(items) == 1
    assert items[0]["amount"] == 360
    assert items[0]["description"] == (
        f"Managed LLM overage {period_of()} (smallbiz): support-bot (Pro): 1.2M over 5M included, $3.60"
    )
    summary = _owner(tenant).get("/api/billing/summary").json()
    assert summary["overage_amount_usd"] == "3.60"
    assert [(m["agent"], m["overage_amount_usd"]) for m in summary["managed"]] == [("support-bot", "3.60")]


def test_the_invoice_item_is_itemised_per_agent(tenant, agent, stripe):
    from billing.managed import managed_set
    from billing.stripe.ledger import overage_push

    make_managed_paid(tenant, "ultra")  # the default agent
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="starter")
    make_usage(tenant, tokens=10_750_000)  # 750k over Ultra's 10M at $5 → $3.75
    make_usage(tenant, tokens=3_000_000, agent=agent)  # 1M over Starter's 2M at $2 → $2.00
    assert overage_push(tenant=tenant, period=period_of()).action == "created"
    (item,) = _overage_items(stripe, tenant)
    assert item["amount"] == 575
    assert item["description"].endswith(
        "workspace default (Ultra): 750k over 10M included, $3.75; support-bot (Starter): 1M over 2M included, $2.00"
    )


def test_reconciliation_moves_a_subscription_on_an_old_plan_to_the_tiers(tenant, agent, stripe):
    """What the data migration leaves: a Stripe subscription on the old tenant-level plan, the tenant on free
    with its agents managed; reconciliation swaps the item for the tier's with the agents' quantity."""
    from billing.managed import managed_set

    customer = attach_card(tenant)
    stripe.v1.plans.create(
        params={
            "id": "byok-pro-agent-1000-usd-month",
            "currency": "usd",
            "interval": "month",
            "amount": 1000,
            "product": {"name": "BYOK Standard"},
        }
    )
    old = stripe.v1.subscriptions.create(
        params={"customer": customer, "items": [{"plan": "byok-pro-agent-1000-usd-month", "quantity": 1}]}
    )
    Subscription.objects.unscoped().filter(tenant=tenant).update(stripe_subscription_id=old.id)
    for a in (None, agent):
        managed_set(tenant=tenant, actor=SYSTEM, agent=a, tier_slug="pro")
    run = reconcile(period=period_of())
    assert list(run.issues.values_list("kind", "repaired")) == [("quantity_drift", True)]
    assert remote_items(stripe, tenant) == {PRO: 2}
    assert reconcile(period=period_of()).issues_found == 0


def test_an_agent_turned_off_mid_period_still_pays_its_overage(tenant, agent, stripe, manage_client):
    from billing.managed import managed_set
    from billing.stripe.ledger import overage_push

    make_managed_paid(tenant, "pro")  # the default agent keeps the subscription alive
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="pro")
    make_usage(tenant, tokens=6_000_000, agent=agent)  # 1M over at $3
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug=None)
    assert policy().managed_access(tenant.id, agent.id) is None
    assert overage_push(tenant=tenant, period=period_of()).amount_cents == 300
    body = manage_client.get("/api/billing/summary").json()
    assert [(m["agent"], m["active"], m["overage_amount_usd"]) for m in body["managed"]] == [
        (None, True, "0.00"),
        ("support-bot", False, "3.00"),
    ]
    assert body["base_amount_usd"] == "10.00"  # only the agents still managed
    # on again later in the period: one agent, counted once
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="ultra")
    body = manage_client.get("/api/billing/summary").json()
    assert [(m["agent"], m["tier"], m["active"]) for m in body["managed"]] == [
        (None, "pro", True),
        ("support-bot", "ultra", True),
    ]


def test_a_failing_first_payment_turns_nothing_on(tenant, agent, stripe):
    attach_card(tenant, number="4000000000000341")  # attaches, then every charge fails
    response = _put(_owner(tenant), f"/api/agents/{agent.slug}/managed", "pro")
    assert response.status_code == 402
    assert response.json()["code"] in {"card_declined", "payment_failed"}
    assert not ManagedAgent.objects.unscoped().exists()
    assert not stripe.v1.subscriptions.list(params={"status": "active"}).data
    assert _sub(tenant).stripe_subscription_id == ""
    assert policy().managed_access(tenant.id, agent.id) is None


def test_a_subscription_gone_in_stripe_is_replaced_when_a_tier_is_turned_on(paid_tenant, agent, stripe):
    old = _sub(paid_tenant).stripe_subscription_id
    stripe.v1.subscriptions.cancel(old)  # and its webhook never arrived
    response = _put(_owner(paid_tenant), f"/api/agents/{agent.slug}/managed", "ultra")
    assert response.status_code == 200, response.content
    new = _sub(paid_tenant).stripe_subscription_id
    assert new
    assert new != old
    assert remote_items(stripe, paid_tenant) == {
        PRO: 1,
        ULTRA: 1,
    }  # the default agent's Pro and the new Ultra


def test_the_guardrail_is_sized_by_the_managed_agents(tenant, agent, manage_client, settings):
    from billing.managed import managed_set
    from billing.plans import assign_plan

    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    caps = manage_client.get("/api/billing/caps").json()
    assert (caps["platform_warn_tcu"], caps["platform_hard_tcu"]) == (0, 0)  # free, nothing managed
    writer = agent_create(tenant=tenant, actor=SYSTEM, slug="writer", name="Writer")
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="starter")
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="pro")
    managed_set(tenant=tenant, actor=SYSTEM, agent=writer, tier_slug="ultra")
    caps = manage_client.get("/api/billing/caps").json()
    # Starter's figures per agent; Pro and Ultra keep Starter's ratio of cap to allowance, each allowance at its
    # worst case (all tokens at the tier's highest per-token price): Starter 2M × $1.20 (MiniMax M2.5 output) =
    # $2.40, Pro 5M × $5 (Claude Haiku 4.5 output) = $25, Ultra 10M × $15 (Claude Sonnet 4 output) = $150.
    pro, ultra = Decimal(25) / Decimal("2.4"), Decimal(150) / Decimal("2.4")
    warn = 200_000 + int(200_000 * pro) + int(200_000 * ultra)
    hard = 300_000 + int(300_000 * pro) + int(300_000 * ultra)
    assert (caps["platform_warn_tcu"], caps["platform_hard_tcu"]) == (warn, hard) == (14_783_333, 22_175_000)
    assert (caps["warn_tcu"], caps["hard_tcu"]) == (warn, hard)  # no caps of its own
    managed_set(tenant=tenant, actor=SYSTEM, agent=writer, tier_slug=None)
    assign_plan(tenant=tenant, plan_slug="enterprise")  # a platform plan adds its own figures
    caps = manage_client.get("/api/billing/caps").json()
    assert (caps["platform_warn_tcu"], caps["platform_hard_tcu"]) == (
        200_000 + int(200_000 * pro) + 200_000,
        300_000 + int(300_000 * pro) + 300_000,
    )


@pytest.mark.parametrize("tier_slug", ["starter", "pro", "ultra"])
def test_no_managed_agent_is_stopped_before_its_included_tokens_are_used(
    tenant, manage_client, settings, tier_slug
):
    """Whatever mix of its tier's models and of input and output an agent uses, its included tokens cost at most
    the tier's highest per-token price each: the guardrail is above that."""
    from billing.managed import managed_set
    from billing.models import ManagedTier
    from llm.config.catalog import get_catalog
    from llm.metering.pricing import tcu_of

    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 200_000, 300_000
    tier = ManagedTier.objects.get(slug=tier_slug)
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug=tier_slug)
    catalog = get_catalog()
    highest = max(
        max(catalog.model(m).input_usd_per_mtok, catalog.model(m).output_usd_per_mtok) for m in tier.models
    )
    worst_allowance = tcu_of(Decimal(tier.included_tokens) * highest / Decimal(1_000_000))
    caps = manage_client.get("/api/billing/caps").json()
    assert caps["platform_hard_tcu"] >= worst_allowance
    assert caps["platform_warn_tcu"] < caps["platform_hard_tcu"]
