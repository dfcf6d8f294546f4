"""Issue #14's "Done when", walked in a real browser as a small business would, as far as the pages go.

Sign up; create two agents, one from a template (Content writer, recommended Pro) and one blank on the workspace's
own key; pay for Pro in Stripe Checkout (tests/fakes/stripe_checkout.py in front of localstripe); call the real
gateway as each agent until the Pro agent is past its 5M included tokens and then stopped by the platform's
guardrail, while the own-key agent keeps working; read the per-agent bar and the overage on the usage page; run the
billing cycle twice; find in Stripe one subscription item for Pro with quantity 1 and one overage invoice item with
the amount the page shows.
"""

from __future__ import annotations

import json
import re
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from billing.models import LedgerEntry, Subscription
from billing.stripe.client import reset_clients, stripe_client
from billing.usage import period_of
from llm.models import UsageEvent
from tests.billing.conftest import WEBHOOK_SECRET, localstripe_url, stripe_settings  # noqa: F401  (fixtures)
from tests.browser.conftest import shot, signup
from tests.fakes.stripe_checkout import CheckoutFake
from tests.gateway.conftest import drain_events, reconfigured

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PRO_PLAN = "byok-tier-pro-1000-usd-month"
PER_CALL = (2_000_000, 2_000_000)  # tokens the fake provider reports per call: 4M
OWN_KEY_MODEL = "openai:gpt-5-mini"


@pytest.fixture
def checkout(stripe_settings, live_server):  # noqa: F811  (stripe_settings is the imported fixture)
    """Stripe for the app: Checkout (the fake) in front of localstripe; success URLs lead back to the live server."""
    fake = CheckoutFake(
        upstream=stripe_settings.STRIPE_API_BASE,
        webhook_url=f"{live_server.url}/billing/stripe/webhook",
        webhook_secret=WEBHOOK_SECRET,
    )
    stripe_settings.STRIPE_API_BASE = fake.url
    stripe_settings.SITE_URL = live_server.url
    reset_clients()
    yield fake
    fake.stop()
    reset_clients()


@pytest.fixture
def provider(monkeypatch, fake, settings):
    """The fake provider as OpenAI for the platform's keys and the tenant's own; every chat reports PER_CALL."""
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = (
        200_000,
        300_000,
    )  # Starter's; one Pro agent: 2,083,333 / 3,125,000 (its 5M included tokens at Claude Haiku 4.5's $5, ×1.25)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    for name in ("OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    fake.usage = PER_CALL
    return fake


def _key_for(page, agent_slug: str) -> str:
    page.goto("/keys/")
    page.fill("#id_name", f"{agent_slug} key")
    page.select_option("#id_agent", label=agent_slug)
    page.click("text=Create key")
    return page.inner_text("#new-key-value").strip()


def _chat(gateway_url: str, key: str, model: str = "default") -> httpx.Response:
    return httpx.post(
        gateway_url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Draft this week's newsletter."}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _cycle(period: str) -> dict:
    out = StringIO()
    call_command("run_billing_cycle", "--period", period, stdout=out)
    return json.loads(out.getvalue())


def test_a_small_business_buys_pro_for_one_agent_and_pays_its_overage(page, checkout, provider, gateway_url):
    from tenants.models import Membership, Tenant

    # --- sign up; two agents: one from a template on Pro (paid in Checkout), one blank on the own key -------
    signup(page)
    page.goto("/agents/")
    page.click("[data-template=content-writer]")
    page.wait_for_url(re.compile(r".*/agents/\?template=content-writer#new-agent$"))
    assert page.input_value("#id_slug") == "content-writer"
    assert page.input_value("#id_name") == "Content writer"
    assert page.is_checked("input[name=tier][value=pro]")  # the template's recommended tier
    assert "Recommended" in page.inner_text("[data-tier=pro]")
    shot(page, "agents-templates")
    page.click("text=Create agent")
    page.wait_for_url(
        re.compile(re.escape(checkout.url) + r"/c/pay/cs_test_\w+(#.*)?$")
    )  # no card yet: Stripe asks
    assert PRO_PLAN in page.inner_text("body")
    page.click("button:has-text('Pay')")
    page.wait_for_url(re.compile(r".*/agents/content-writer/\?checkout=success(#.*)?$"))
    assert "Payment received: managed LLM is on." in page.inner_text("#managed")
    assert "Now: Pro — $10/mo, 5M tokens a month included" in page.inner_text("#managed")
    assert page.is_checked("#managed_enabled")
    assert page.is_checked("#managed input[name=tier][value=pro]")
    assert checkout.webhook_answers == [200]
    shot(page, "agent-managed-pro")

    page.goto("/agents/")
    page.fill("#id_slug", "helpdesk")
    page.fill("#id_name", "Helpdesk")
    assert page.is_checked("input[name=tier][value='']")  # blank: the own key, nothing billed
    page.click("text=Create agent")
    page.wait_for_url("**/agents/helpdesk/")
    assert "Now: off — your own key, not billed by us." in page.inner_text("#managed")
    page.goto("/agents/")
    rows = page.inner_text("table")
    assert re.search(r"content-writer\s+Content writer\s+Managed · Pro", rows)
    assert re.search(r"helpdesk\s+Helpdesk\s+Bring your own key", rows)

    tenant = Tenant.objects.get(slug="acme")
    stripe = stripe_client()
    sub = Subscription.objects.unscoped().get(tenant=tenant)
    remote = stripe.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert [(i["plan"]["id"], i["quantity"]) for i in remote["items"]["data"]] == [(PRO_PLAN, 1)]

    # --- the workspace's own key for everything not managed (the API, as a script would) -------------------
    api = APIClient()
    api.force_login(Membership.objects.unscoped().get(tenant=tenant, role="owner").user)
    saved = api.post(
        "/api/llm/credentials", {"kind": "openai", "api_key": "sk-test-tenant-" + "7e2a"}, format="json"
    )
    assert saved.status_code == 201, saved.content
    prefs = api.post("/api/llm/preferences", {"mode": "byok", "model": OWN_KEY_MODEL}, format="json")
    assert prefs.status_code in (200, 201), prefs.content
    writer_key, helpdesk_key = _key_for(page, "content-writer"), _key_for(page, "helpdesk")
    reconfigured()

    # --- calls: Pro past its 5M included tokens, then stopped by the guardrail; the own key never is -------
    statuses = []
    for _ in range(40):
        statuses.append(_chat(gateway_url, writer_key).status_code)
        if statuses[-1] != 200:
            break
    assert statuses[:2] == [200, 200], statuses  # 8M tokens: 3M past the 5M included
    # The guardrail (3,125,000 TCU for one Pro agent) stops platform calls.
    assert statuses[-1] == 402, statuses
    refused = _chat(gateway_url, writer_key).json()["error"]
    assert refused["code"] == "tcu_hard_cap_reached"
    for _ in range(3):  # far past any platform figure: the own key is never stopped by the platform
        assert _chat(gateway_url, helpdesk_key).status_code == 200
    events = drain_events()
    platform = [e for e in events if e.mode == "platform"]
    assert {(e.agent.slug, e.model) for e in platform} == {
        ("content-writer", "openai:gpt-4o-mini")
    }  # Pro's first model
    assert {e.agent.slug for e in events if e.mode == "byok"} == {"helpdesk"}
    used = sum(e.input_tokens + e.output_tokens for e in platform)
    assert used == 4_000_000 * (len(statuses) - 1)
    expected = f"{(used - 5_000_000) * 3 / 1_000_000:.2f}"  # Pro: $3 per 1M past 5M

    # --- the usage page: the per-agent bar and the overage so far ----------------------------------------
    page.goto("/usage/")
    bar = page.inner_text("[data-agent=content-writer]")
    assert f"{used // 1_000_000}M of 5M tokens" in bar
    assert "5M included in your plan" in bar
    assert re.search(
        rf"Overage so far: {(used - 5_000_000) // 1_000_000}M tokens × \$3 per 1M = \${expected}", bar
    )
    assert "your own key — not billed by us" in page.inner_text(".agent-byok [data-agent=helpdesk]")
    shown = page.inner_text("[data-overage-total]")
    assert shown == f"${expected}"
    shot(page, "usage-managed-bars")

    # --- the billing cycle, twice: one item per tier, one overage item with the page's amount --------------
    period = period_of()
    first, second = _cycle(period), _cycle(period)
    assert (first["pushes"], second["pushes"]) == ({"created": 1}, {"unchanged": 1})
    assert (first["reconciliation"]["issues_found"], second["reconciliation"]["issues_found"]) == (0, 0)
    stripe_items = stripe.v1.subscriptions.retrieve(sub.stripe_subscription_id)["items"]["data"]
    assert [(i["plan"]["id"], i["quantity"]) for i in stripe_items] == [(PRO_PLAN, 1)]
    listed = stripe.v1.invoice_items.list(params={"customer": sub.stripe_customer_id}).data
    invoice_items = [
        i for i in (item.to_dict() for item in listed) if (i.get("metadata") or {}).get("ledger_key")
    ]
    assert len(invoice_items) == 1, invoice_items
    assert invoice_items[0]["amount"] == round(float(expected) * 100)
    assert "content-writer (Pro)" in invoice_items[0]["description"]
    assert LedgerEntry.objects.unscoped().filter(tenant=tenant).count() == 1
    page.goto("/usage/")
    assert page.inner_text("[data-overage-total]") == shown  # the page and the invoice agree after the cycle
    page.goto("/billing/")
    assert page.inner_text("#managed-usage [data-overage-total]") == shown
    shot(page, "billing-managed")

    # --- still: the own-key agent keeps working after the cycle and past the guardrail ----------------------
    assert _chat(gateway_url, helpdesk_key).status_code == 200
    assert UsageEvent.objects.unscoped().filter(tenant=tenant, mode="platform").count() == len(platform)
