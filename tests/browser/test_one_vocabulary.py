"""#15 point 18 in the LLM pages: a failed connection test reads in words (no `unavailable: openai_compatible:`), a
missing key is asked for by the provider's name (no `(field api_key)`), and a mode has one name on the settings
page, the dashboard and the audit log."""

from __future__ import annotations

import pytest

from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_llm_pages_speak_one_vocabulary(page, fake):
    signup(page)
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.click("#save")
    page.wait_for_selector("[data-error=api_key] li")
    asked = page.inner_text("[data-error=api_key]")
    assert "Enter your OpenAI API key" in asked
    assert "field" not in asked
    assert "api_key" not in asked

    page.check("input[name=mode][value=custom]")
    page.fill("#ce_base_url", f"{fake.url}/status/503/v1")
    page.fill("#ce_model", "llama3")
    page.click("#test-connection")
    page.wait_for_selector(".test-result.fail")
    result = page.inner_text("#test-result")
    assert result.startswith("Could not connect.")
    assert "The endpoint answered 503" in result
    assert "unavailable" not in result
    assert "openai_compatible" not in result
    shot(page, "connection-test-in-words")

    page.fill("#ce_base_url", f"{fake.url}/v1")
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Enterprise custom endpoint')")
    page.goto("/dashboard/")
    assert "Enterprise custom endpoint" in page.inner_text("#llm-summary")
    page.goto("/audit/")
    assert "Enterprise custom endpoint" in page.inner_text("main")
    assert "custom" not in page.inner_text("main").replace("Enterprise custom endpoint", "").lower().split()
