"""An agent's budget and a key's monthly limit edited in a real browser: the error next to the field, then saved."""

from __future__ import annotations

import pytest

from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_agent_budget_and_key_limit_are_edited_on_their_pages(page):
    from billing.caps import agent_budget_tcu
    from tenants.models import Agent, ApiKey

    signup(page)
    page.goto("/agents/")
    page.fill("#id_slug", "support-bot")
    page.click("text=Create agent")
    page.wait_for_url("**/agents/support-bot/")

    page.fill("#id_monthly_tcu", "-3")
    page.click("button:has-text('Save budget')")
    page.wait_for_selector("#id_monthly_tcu-errors")
    assert "greater than or equal to 0" in page.inner_text("#id_monthly_tcu-errors")
    page.fill("#id_monthly_tcu", "250000")
    page.click("button:has-text('Save budget')")
    page.wait_for_selector("text=Budget saved")
    agent = Agent.objects.unscoped().get(slug="support-bot")
    assert agent_budget_tcu(agent.tenant_id, agent.id) == 250_000
    assert page.input_value("#id_monthly_tcu") == "250000"
    shot(page, "agent-budget")

    page.goto("/keys/")
    page.fill("#id_name", "bot")
    page.fill("#id_spend_limit_tcu", "1000")
    page.click("text=Create key")
    page.wait_for_selector("#new-key")
    key = ApiKey.objects.unscoped().get(name="bot")
    assert key.spend_limit_tcu == 1000
    page.goto("/keys/")
    field = f"#limit-{key.id}"
    assert page.input_value(field) == "1000"
    page.fill(field, "12.5")
    page.click(f"form:has({field}) >> button:has-text('Save')")
    page.wait_for_selector(f"#limit-{key.id}-errors")
    assert "whole number" in page.inner_text(f"#limit-{key.id}-errors").lower()
    page.fill(field, "5000")
    page.click(f"form:has({field}) >> button:has-text('Save')")
    page.wait_for_selector("text=saved; it applies to the next call")
    key.refresh_from_db()
    assert key.spend_limit_tcu == 5000
    shot(page, "key-limit")
