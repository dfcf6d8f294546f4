"""The tenant pages a first-time owner uses (#15): keys, audit, agents, sign-up, members, the switcher, phones."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _create_key(page, name: str) -> None:
    page.goto("/keys/")
    page.fill("#id_name", name)
    page.click("text=Create key")


def test_reloading_after_creating_a_key_creates_nothing_and_a_name_in_use_is_refused(page):
    from tenants.models import ApiKey

    signup(page)
    _create_key(page, "prod")
    page.wait_for_selector("#new-key")
    secret = page.inner_text("#new-key-value").strip()
    assert secret.startswith("byok-")
    page.reload()
    page.wait_for_selector("h1:has-text('API keys')")
    assert ApiKey.objects.unscoped().filter(name="prod").count() == 1
    assert page.locator("#new-key").count() == 0  # shown once, not again
    assert secret not in page.content()

    _create_key(page, "Prod")
    page.wait_for_selector("#id_name-errors")
    assert "already in use" in page.inner_text("#id_name-errors")
    assert ApiKey.objects.unscoped().count() == 1
    shot(page, "keys-duplicate-name")


def test_the_audit_log_reads_in_words_before_and_after_and_filters_by_plain_words(page):
    from tenants.audit import SYSTEM, audit_record
    from tenants.models import Tenant

    signup(page)
    _create_key(page, "prod")
    page.wait_for_selector("#new-key")
    tenant = Tenant.objects.get(slug="acme")
    # What saving the LLM settings records (llm.config.preferences), secrets included.
    audit_record(
        tenant=tenant,
        actor=SYSTEM,
        action="llm.preferences.save",
        object_repr="LLM preferences (workspace default)",
        changes={"mode": [None, "custom"], "max_tokens": [4096, 8000], "api_key_masked": "sk-…abcd"},
    )
    page.goto("/audit/")
    row = page.locator("tr", has_text="Changed the LLM settings")
    text = row.inner_text()
    assert "Mode: none → Enterprise custom endpoint" in text
    assert "Max tokens: 4,096 → 8,000" in text
    assert "API key: changed" in text
    for raw in ("None", "'custom'", "[changed]", "abcd", "llm.preferences.save", "max_tokens"):
        assert raw not in text, raw

    page.fill("#id_q", "key")
    page.click("button:has-text('Filter')")
    page.wait_for_selector("text=Created an API key")
    assert page.locator("tbody tr").count() == 1
    assert "Changed the LLM settings" not in page.inner_text("main")
    shot(page, "audit-words")


def _context(browser, live_server, width: int):
    height = 844 if width < 500 else 800
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


@pytest.mark.parametrize("width", [1280, 390])
def test_phone_and_desktop_keep_row_actions_in_view_and_snippets_copy(browser, live_server, width):
    from tenants.models import ApiKey

    context, page, errors = _context(browser, live_server, width)
    try:
        signup(page, name="Acme AI with a rather long workspace name")
        page.goto("/dashboard/")
        page.click("[data-copy='gateway-snippet']")
        page.wait_for_selector("[data-copy='gateway-snippet']:has-text('Copied')")
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied.startswith("from openai import OpenAI")
        assert 'model="default"' in copied
        snippet = page.locator("#gateway-snippet").bounding_box()
        assert snippet["x"] + snippet["width"] <= width  # wrapped, nothing clipped on the right

        _create_key(page, "a key with a fairly long descriptive name")
        page.wait_for_selector("#new-key")
        page.click("[data-copy='new-key-value']")
        page.wait_for_selector("[data-copy='new-key-value']:has-text('Copied')")
        assert page.evaluate("() => navigator.clipboard.readText()").startswith("byok-")
        page.goto("/keys/")
        revoke = page.locator("button:has-text('Revoke')")
        revoke.scroll_into_view_if_needed()
        box = revoke.bounding_box()
        assert box["x"] >= 0  # in view, no sideways scrolling
        assert box["x"] + box["width"] <= width
        page.on("dialog", lambda dialog: dialog.accept())
        revoke.click()
        page.wait_for_selector("[data-key-state='revoked']")
        assert ApiKey.objects.unscoped().get().revoked_at is not None
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width

        if width < 500:  # the switcher lives in the menu on phones, as wide as the menu
            assert not page.locator("#tenant-switch").is_visible()
            page.click(".menu-toggle")
            switcher = page.locator("#tenant-switch-nav")
            assert switcher.is_visible()
            assert switcher.bounding_box()["width"] >= width - 60
        else:
            assert page.locator("#tenant-switch").is_visible()
        shot(page, f"keys-phone-{width}")
    finally:
        context.close()
    assert errors == []


def test_signup_shows_every_error_at_once_focuses_the_first_and_a_user_adds_a_workspace(page, make_tenant):
    from tenants.models import Membership, Tenant

    make_tenant("unicode-cafe-co")  # the id the name suggests is taken
    page.goto("/signup/")
    page.fill("#id_name", "Ada")
    page.fill("#id_email", "ada@example")
    page.fill("#id_password", "password")
    page.type("#id_tenant_name", "Ünïcode Café & Co")
    assert page.input_value("#id_tenant_slug") == "unicode-cafe-co"
    page.click("button[type=submit]")
    page.wait_for_selector("#id_email-errors")
    for field in ("email", "password", "tenant_slug"):  # all three problems after one submit
        assert page.locator(f"#id_{field}-errors").is_visible(), field
    assert page.evaluate("() => document.activeElement.id") == "id_email"
    assert page.input_value("#id_name") == "Ada"
    assert page.input_value("#id_tenant_name") == "Ünïcode Café & Co"
    assert page.input_value("#id_password") == ""
    assert "Enter your password again" in page.inner_text(".field:has(#id_password)")
    shot(page, "signup-errors")

    page.fill("#id_email", "ada@example.com")
    page.fill("#id_password", "a-sturdy-passphrase-42")
    page.fill("#id_tenant_slug", "ada-co")
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard/")

    page.select_option("#tenant-switch", "new")
    page.wait_for_url("**/workspace/new/")
    page.type("#id_tenant_name", "Side Project")
    assert page.input_value("#id_tenant_slug") == "side-project"
    page.click("button:has-text('Create workspace')")
    page.wait_for_url("**/dashboard/")
    page.wait_for_selector("h1:has-text('Side Project')")
    side = Tenant.objects.get(slug="side-project")
    assert Membership.objects.unscoped().get(tenant=side).user.email == "ada@example.com"
    assert page.locator("#tenant-switch option:checked").inner_text() == "Side Project"


def test_an_agent_page_says_what_it_inherits_and_resets_to_the_workspace_settings(page):
    from llm.models import Preferences
    from tenants.audit import SYSTEM
    from tenants.keys import apikey_create, apikey_revoke
    from tenants.models import Agent

    signup(page)
    page.goto("/agents/")
    page.fill("#id_slug", "support-bot")
    page.fill("#id_name", "Support bot")
    page.click("text=Create agent")
    page.wait_for_url("**/agents/support-bot/")
    agent = Agent.objects.unscoped().get(slug="support-bot")
    key, _ = apikey_create(tenant=agent.tenant, actor=SYSTEM, name="bot key", scopes=["gateway"], agent=agent)
    apikey_revoke(key=key, actor=SYSTEM)
    page.reload()
    assert "The workspace has no LLM settings yet" in page.inner_text("#llm")

    _, manage = apikey_create(tenant=agent.tenant, actor=SYSTEM, name="setup", scopes=["manage"])
    saved = Client(HTTP_AUTHORIZATION=f"Bearer {manage}").post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "llama3",
            "custom_endpoint": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
        },
        content_type="application/json",
    )
    assert saved.status_code in (200, 201), saved.content
    page.reload()
    inheritance = page.inner_text("#llm-inheritance")
    assert "Uses the workspace's LLM settings" in inheritance
    assert "Enterprise custom endpoint · model llama3" in page.inner_text(
        "#llm"
    )  # the mode and model it uses
    assert page.locator("button:has-text('Reset to workspace settings')").count() == 0
    assert page.locator("#id_monthly_tcu").is_visible()  # its own budget
    assert page.inner_text("[data-key-state]") == "Revoked"  # the keys page's word

    page.click("text=Give this agent its own settings")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "mistral:mistral-medium-3.1")
    page.fill("#api_key", "sk-mistral-agent-9876")
    page.click("#save")
    page.wait_for_selector("#llm-inheritance >> text=Overrides the workspace's LLM settings")
    assert page.url.endswith("/agents/support-bot/")
    assert "mistral:mistral-medium-3.1" in page.inner_text("#llm")
    assert "Bring your own key" in page.inner_text("#llm")

    messages: list[str] = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.dismiss()))
    page.click("button:has-text('Reset to workspace settings')")
    page.wait_for_timeout(300)
    assert "Reset “Support bot” to the workspace's LLM settings?" in messages[0]
    assert Preferences.objects.unscoped().filter(agent=agent).exists()  # cancelled: nothing changed
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Reset to workspace settings')")
    page.wait_for_selector("text=now uses the workspace's LLM settings")
    assert "Uses the workspace's LLM settings" in page.inner_text("#llm-inheritance")
    assert not Preferences.objects.unscoped().filter(agent=agent).exists()
    shot(page, "agent-inherits")


def test_members_explain_roles_hide_the_last_owners_remove_and_the_menu_counts_unread_notifications(page):
    from billing.notifications import notification_create
    from tenants.audit import SYSTEM
    from tenants.models import Membership, Tenant, User
    from tenants.services import agent_create

    signup(page)
    tenant = Tenant.objects.get(slug="acme")
    agent_create(tenant=tenant, actor=SYSTEM, slug="one-bot")
    page.goto("/dashboard/")
    agents_card = page.inner_text(".card:has(h2:has-text('Agents'))")
    assert "1 agent:" in agents_card
    assert "attribute usage" not in agents_card  # "1 agent attribute usage" was the old sentence

    page.goto("/members/")
    roles = page.inner_text("#roles")
    assert "Billing" in roles
    assert "spend caps" in roles
    assert page.locator("button:has-text('Remove')").count() == 0  # the only owner
    assert "The only owner" in page.inner_text("tbody")
    second = User.objects.create_user(email="second@example.com", password="a-sturdy-passphrase-42")
    Membership.objects.for_tenant(tenant).create(user=second, role="owner")
    page.reload()
    assert page.locator("button:has-text('Remove')").count() == 2

    assert page.locator("#unread-count").count() == 0
    notification_create(tenant=tenant, title="You are close to your cap")
    notification_create(tenant=tenant, title="Payment failed")
    page.goto("/members/")
    assert page.inner_text("#unread-count").startswith("2")
    page.click("nav >> text=Notifications")
    page.click("form:has(input[name=id]) >> nth=0 >> button:has-text('Mark read')")
    page.wait_for_url("**/notifications/")
    assert page.inner_text("#unread-count").startswith("1")
    shot(page, "members-roles")
