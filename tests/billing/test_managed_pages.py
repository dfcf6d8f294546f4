"""Managed LLM on the pages: an agent's "Use managed LLM" card, the workspace default agent's on the billing page,
agent templates on the agents page, and the usage page's per-agent bars (the billing summary's own figures).

Each form: bad input is a field error and changes nothing, another tenant's agent is a 404, a lower role is refused;
Stripe is localstripe (cards, subscriptions) or, for Checkout (which localstripe lacks), the documented-shape fake of
tests/billing/test_checkout.py."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.test import Client

from billing.managed import managed_set
from billing.models import ManagedAgent, ManagedTier, Subscription
from billing.stripe.client import reset_clients
from billing.summary import billing_summary
from byok_platform.agent_templates import TEMPLATES
from tenants.audit import SYSTEM
from tenants.models import Agent, Membership, User
from tenants.roles import Role
from tenants.services import agent_create, agent_update

from .conftest import attach_card, make_usage, remote_items
from .test_checkout import CHECKOUT_URL, FakeStripe

pytestmark = pytest.mark.django_db

PRO = "byok-tier-pro-1000-usd-month"
STARTER = "byok-tier-starter-500-usd-month"
# Internal tier names and the tiers' backend models: never on a customer's page.
JARGON = ("Economy", "Standard", "Premium", "TCU per", "gpt-4o", "claude", "minimax", "mistral", "sonnet")


@pytest.fixture
def checkout(settings):
    """Stripe as the Checkout fake of test_checkout.py: a customer without a card is sent to CHECKOUT_URL."""
    fake = FakeStripe()
    settings.STRIPE_API_KEY, settings.STRIPE_API_BASE = "sk_test_fake", fake.url
    reset_clients()
    yield fake
    fake.server.shutdown()
    reset_clients()


def _as(tenant, role: str = "owner") -> Client:
    client = Client()
    if role == "owner":
        client.force_login(Membership.objects.unscoped().get(tenant=tenant, role="owner").user)
        return client
    user = User.objects.create_user(
        email=f"{role}@{tenant.slug}.example.com", password="a-sturdy-passphrase-42"
    )
    Membership.objects.unscoped().create(tenant=tenant, user=user, role=role)
    client.force_login(user)
    return client


def _text(response) -> str:
    """The page as read: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))).replace(
        " .", "."
    )


def _managed(tenant) -> list[tuple[str | None, str]]:
    rows = ManagedAgent.objects.unscoped().filter(tenant=tenant, ended_at__isnull=True).select_related("tier")
    return sorted((r.agent.slug if r.agent else None, r.tier.slug) for r in rows)


def _on(tier: str) -> dict[str, str]:
    return {"action": "managed", "enabled": "on", "tier": tier}


# --- an agent's page ------------------------------------------------------------------------------------


def test_the_agent_page_offers_the_tiers_in_customer_words_only(tenant, agent):
    response = _as(tenant).get(f"/agents/{agent.slug}/")
    # The agent's own LLM card names the model it calls with your own key (#15 point 20); the tiers never do.
    response.content = re.sub(rb'<section id="agent-llm".*?</section>', b"", response.content, flags=re.S)
    page = _text(response)
    assert "Use managed LLM" in page
    assert "Now: off — your own key, not billed by us." in page
    for line in (
        "Starter — $5/mo",
        "Fast & affordable. Perfect for simple tasks (FAQ, email replies)",
        "Pro — $10/mo POPULAR",
        "Smarter responses. Great for content, research, analysis",
        "Ultra — $20/mo",
        "Most powerful. For complex tasks (coding, deep research, strategy)",
        "5M tokens a month included, then $3 per 1M more",
    ):
        assert line in page, line
    assert not [word for word in JARGON if word.lower() in page.lower()]


def test_turning_pro_on_with_a_card_on_file_applies_it_and_bills_it(tenant, agent, stripe):
    attach_card(tenant)
    client = _as(tenant)
    response = client.post(f"/agents/{agent.slug}/", _on("pro"))
    assert response.status_code == 302
    assert response["Location"] == f"/agents/{agent.slug}/#managed"
    assert _managed(tenant) == [("support-bot", "pro")]
    assert remote_items(stripe, tenant) == {PRO: 1}  # paid before it applied
    page = _text(client.get(response["Location"]))
    assert "Managed LLM Pro ($10/mo) is on for “Support bot”." in page
    assert "Now: Pro — $10/mo, 5M tokens a month included" in page
    off = client.post(f"/agents/{agent.slug}/", {"action": "managed", "tier": "pro"})  # unticked: off
    assert off.status_code == 302
    assert _managed(tenant) == []
    assert "Managed LLM is off for “Support bot”" in _text(client.get(off["Location"]))


def test_without_a_card_the_page_sends_the_user_to_stripe_checkout(tenant, agent, checkout):
    client = _as(tenant)
    response = client.post(f"/agents/{agent.slug}/", _on("ultra"))
    assert response.status_code == 302
    assert response["Location"] == CHECKOUT_URL
    assert _managed(tenant) == []  # applied by checkout.session.completed, once paid
    _, _, form = next(c for c in checkout.calls if c[1] == "/v1/checkout/sessions")
    assert form["metadata[managed_tier]"] == ["ultra"]
    assert form["metadata[managed_agent]"] == [str(agent.pk)]
    back = _text(client.get(f"/agents/{agent.slug}/?checkout=success"))
    assert "Payment received: managed LLM turns on as soon as Stripe confirms it" in back
    cancelled = _text(client.get(f"/agents/{agent.slug}/?checkout=cancel"))
    assert "Checkout cancelled: nothing was charged and nothing changed." in cancelled


def test_a_declined_payment_is_a_clear_message_and_changes_nothing(tenant, agent, stripe):
    attach_card(tenant, number="4000000000000341")  # attaches, then every charge fails
    response = _as(tenant).post(f"/agents/{agent.slug}/", _on("pro"))
    assert response.status_code == 400
    page = _text(response)
    assert re.search(r"(card was declined|first payment failed, so managed LLM was not turned on)", page)
    assert _managed(tenant) == []
    assert not stripe.v1.subscriptions.list(params={"status": "active"}).data


def test_without_stripe_the_page_says_billing_is_not_set_up(tenant, agent):
    response = _as(tenant).post(f"/agents/{agent.slug}/", _on("starter"))
    assert response.status_code == 400
    assert 'class="banner danger"' in response.content.decode()
    assert _managed(tenant) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"enabled": "on"}, "Choose a plan for managed LLM: Starter, Pro, Ultra."),
        ({"enabled": "on", "tier": "premium"}, "Select a valid choice."),
        ({"enabled": "on", "tier": "<b>gold</b>"}, "Select a valid choice."),
        ({"enabled": "on", "tier": "PRO"}, "Select a valid choice."),
    ],
)
def test_a_bad_choice_is_a_field_error_and_changes_nothing(tenant, agent, body, message):
    response = _as(tenant).post(f"/agents/{agent.slug}/", {"action": "managed", **body})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="managed_tier-errors"' in html
    assert message in _text(response)
    assert "<b>gold</b>" not in html
    assert _managed(tenant) == []
    agent.refresh_from_db()
    assert agent.name == "Support bot"  # the settings form was not submitted with it


def test_an_inactive_agent_is_not_turned_on(tenant, agent, stripe):
    attach_card(tenant)
    agent_update(agent=agent, actor=SYSTEM, is_active=False)
    response = _as(tenant).post(f"/agents/{agent.slug}/", _on("pro"))
    assert response.status_code == 400
    assert "This agent is inactive; activate it before turning managed LLM on." in _text(response)
    assert _managed(tenant) == []


def test_another_tenants_agent_is_a_404_and_stays_as_it_was(tenant, other_tenant):
    theirs = agent_create(tenant=other_tenant, actor=SYSTEM, slug="theirs", name="Theirs")
    managed_set(tenant=other_tenant, actor=SYSTEM, agent=theirs, tier_slug="pro")
    client = _as(tenant)
    assert client.get("/agents/theirs/").status_code == 404
    assert client.post("/agents/theirs/", {"action": "managed", "tier": ""}).status_code == 404
    assert _managed(other_tenant) == [("theirs", "pro")]


def test_members_see_the_tier_read_only_and_are_refused_a_change(tenant, agent):
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="starter")
    member = _as(tenant, Role.MEMBER)
    page = member.get(f"/agents/{agent.slug}/")
    html = page.content.decode()
    assert "Now: Starter — $5/mo" in _text(page)
    assert "Only owners, admins and billing members change this." in html
    assert 'name="tier"' not in html
    refused = member.post(f"/agents/{agent.slug}/", {"action": "managed", "tier": ""})
    assert refused.status_code == 403
    assert _managed(tenant) == [("support-bot", "starter")]
    billing = _as(tenant, Role.BILLING)  # the roles that may PUT /api/agents/{slug}/managed may change it
    assert billing.post(f"/agents/{agent.slug}/", {"action": "managed"}).status_code == 302
    assert _managed(tenant) == []


# --- the workspace default agent, on the billing page --------------------------------------------------


def test_the_billing_page_turns_managed_llm_on_for_the_default_agent(tenant, stripe):
    attach_card(tenant)
    client = _as(tenant)
    page = _text(client.get("/billing/"))
    assert "Managed LLM for the workspace default agent" in page
    assert not [word for word in JARGON if word.lower() in page.lower()]
    response = client.post("/billing/", _on("starter"))
    assert response.status_code == 302
    assert response["Location"] == "/billing/#managed"
    assert _managed(tenant) == [(None, "starter")]
    assert remote_items(stripe, tenant) == {STARTER: 1}
    assert "Now: Starter — $5/mo" in _text(client.get("/billing/"))


def test_a_bad_choice_on_the_billing_page_is_a_field_error_and_changes_nothing(tenant):
    response = _as(tenant).post("/billing/", {"action": "managed", "enabled": "on", "tier": "ultra-plus"})
    assert response.status_code == 400
    assert 'id="managed_tier-errors"' in response.content.decode()
    assert _managed(tenant) == []
    sub = Subscription.objects.unscoped().filter(tenant=tenant).first()
    assert sub is None or (sub.warn_tcu_override, sub.hard_tcu_override) == (None, None)  # caps untouched


def test_lower_roles_cannot_change_the_default_agents_tier(tenant):
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="pro")
    assert _as(tenant, Role.MEMBER).post("/billing/", {"action": "managed"}).status_code == 403
    assert _managed(tenant) == [(None, "pro")]
    assert _as(tenant, Role.ADMIN).post("/billing/", {"action": "managed"}).status_code == 302
    assert _managed(tenant) == []


# --- new agents from templates --------------------------------------------------------------------------


def test_every_template_recommends_an_offered_tier_its_month_fits_in():
    tiers = {t.slug: t for t in ManagedTier.objects.filter(is_active=True)}
    assert [t.name for t in TEMPLATES] == [
        "Support email",
        "Content writer",
        "Research agent",
        "Coding assistant",
        "Simple FAQ bot",
    ]
    for template in TEMPLATES:
        assert template.tier in tiers, template
        assert template.monthly_tokens <= tiers[template.tier].included_tokens, template


def test_the_agents_page_offers_the_templates_with_their_tokens_and_tier(tenant):
    page = _text(_as(tenant).get("/agents/"))
    for name, tokens, tier in (
        ("Support email", "1.5M", "Starter — $5/mo"),
        ("Content writer", "3M", "Pro — $10/mo"),
        ("Research agent", "4M", "Pro — $10/mo"),
        ("Coding assistant", "8M", "Ultra — $20/mo"),
        ("Simple FAQ bot", "500K", "Starter — $5/mo"),
    ):
        assert re.search(
            rf"{name} [^$]*? About {re.escape(tokens)} tokens a month Recommended: {re.escape(tier)}", page
        ), name
    assert not [word for word in JARGON if word.lower() in page.lower()]


def test_a_template_fills_in_the_form_and_preselects_its_tier(tenant):
    html = _as(tenant).get("/agents/?template=content-writer").content.decode()
    assert 'value="content-writer"' in html
    assert 'value="Content writer"' in html
    assert "Drafts blog posts, newsletters and social posts" in html
    assert re.search(r'<input type="radio" name="tier" value="pro"\s+checked>', html)
    assert re.search(r'<input type="radio" name="tier" value=""\s*>', html)
    blank = _as(tenant).get("/agents/?template=no-such").content.decode()
    assert re.search(r'<input type="radio" name="tier" value=""\s+checked>', blank)


def test_creating_from_a_template_on_your_own_key_bills_nothing(tenant):
    response = _as(tenant).post(
        "/agents/",
        {
            "slug": "faq-bot",
            "name": "Simple FAQ bot",
            "description": "FAQ",
            "tier": "",
            "template": "faq-bot",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/agents/faq-bot/"
    assert Agent.objects.unscoped().filter(tenant=tenant, slug="faq-bot").exists()
    assert _managed(tenant) == []


def test_creating_on_a_tier_with_a_card_applies_it(tenant, stripe):
    attach_card(tenant)
    client = _as(tenant)
    response = client.post(
        "/agents/", {"slug": "writer", "name": "Content writer", "tier": "pro", "template": "content-writer"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/agents/writer/"
    assert _managed(tenant) == [("writer", "pro")]
    assert remote_items(stripe, tenant) == {PRO: 1}
    listing = _text(client.get("/agents/"))
    assert "writer Content writer Managed · Pro" in listing


def test_creating_on_a_tier_without_a_card_goes_to_stripe_checkout(tenant, checkout):
    response = _as(tenant).post("/agents/", {"slug": "coder", "name": "Coding assistant", "tier": "ultra"})
    assert response.status_code == 302
    assert response["Location"] == CHECKOUT_URL
    coder = Agent.objects.unscoped().get(tenant=tenant, slug="coder")
    _, _, form = next(c for c in checkout.calls if c[1] == "/v1/checkout/sessions")
    assert form["metadata[managed_agent]"] == [str(coder.pk)]
    assert form["success_url"] == ["http://127.0.0.1:8000/agents/coder/?checkout=success"]
    assert _managed(tenant) == []


def test_when_stripe_refuses_the_agent_is_not_created_either(tenant, stripe):
    attach_card(tenant, number="4000000000000341")
    response = _as(tenant).post("/agents/", {"slug": "writer", "tier": "pro"})
    assert response.status_code == 400
    assert 'id="id_tier-errors"' in response.content.decode()
    assert "The agent was not created; choose “Bring your own key” to create it now." in _text(response)
    assert not Agent.objects.unscoped().filter(tenant=tenant).exists()
    assert _managed(tenant) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "Not A Slug", "tier": ""}, "id_slug"),
        ({"slug": "", "tier": "pro"}, "id_slug"),
        ({"slug": "writer", "tier": "premium"}, "id_tier"),
        ({"slug": "writer", "tier": "economy"}, "id_tier"),
    ],
)
def test_bad_input_on_the_new_agent_form_is_a_field_error_and_creates_nothing(tenant, body, field):
    response = _as(tenant).post("/agents/", body)
    assert response.status_code == 400
    assert f'id="{field}-errors"' in response.content.decode()
    assert not Agent.objects.unscoped().filter(tenant=tenant).exists()
    assert _managed(tenant) == []


def test_members_see_agents_but_cannot_create_one(tenant):
    member = _as(tenant, Role.MEMBER)
    page = member.get("/agents/").content.decode()
    assert "Create agent" not in page
    assert member.post("/agents/", {"slug": "sneaky", "tier": "pro"}).status_code == 403
    assert not Agent.objects.unscoped().filter(tenant=tenant).exists()


# --- the usage page: per-agent bars ----------------------------------------------------------------------


def test_the_usage_page_shows_each_managed_agents_bar_and_the_summarys_overage(tenant, agent):
    writer = agent_create(tenant=tenant, actor=SYSTEM, slug="writer", name="Writer")
    agent_create(tenant=tenant, actor=SYSTEM, slug="own-key-bot", name="Own key bot")
    managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug="pro")
    managed_set(tenant=tenant, actor=SYSTEM, agent=writer, tier_slug="starter")
    make_usage(tenant, agent=agent, tokens=6_200_000)  # Pro: 5M included, 1.2M over × $3 = $3.60
    make_usage(tenant, agent=writer, tokens=1_000_000)  # Starter: 2M included, none over
    make_usage(tenant, agent=agent, tokens=9_000_000, mode="byok")  # its own key: never counts

    summary = billing_summary(tenant=tenant, with_invoices=False)
    assert [(m["agent"], m["overage_amount_usd"]) for m in summary["managed"]] == [
        ("support-bot", "3.60"),
        ("writer", "0.00"),
    ]
    response = _as(tenant, Role.MEMBER).get("/usage/")
    page, html = _text(response), response.content.decode()
    assert re.search(
        r"Support bot support-bot Pro · \$10/mo 6.2M of 5M tokens.*?5M included in your plan "
        r"Overage so far: 1.2M tokens × \$3 per 1M = \$3.60",
        page,
    )
    assert re.search(
        r"Writer writer Starter · \$5/mo 1M of 2M tokens 2M included in your plan 50 % used", page
    )
    assert "Overage so far this month: $3.60 — on your next invoice" in page
    assert "Own key bot own-key-bot — your own key — not billed by us" in page
    assert "Workspace default (calls without an agent) — your own key — not billed by us" in page
    assert 'aria-valuenow="124"' in html  # Pro: 6.2M of 5M
    assert re.search(r'class="bar-over" style="width:19.35%"', html)  # 1.2M of the bar's 6.2M

    only = _as(tenant).get("/usage/?agent=writer").content.decode()
    assert 'data-agent="writer"' in only
    assert 'data-agent="support-bot"' not in only
    assert 'data-agent="own-key-bot"' not in only


def test_the_usage_page_without_managed_agents_says_how_to_turn_it_on(tenant, agent):
    page = _text(_as(tenant).get("/usage/"))
    assert "No agent uses managed LLM this month." in page
    assert "Support bot support-bot — your own key — not billed by us" in page
