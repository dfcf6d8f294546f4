"""The tenant pages a first-time owner uses (#15): keys, audit, agents, sign-up, members, the switcher, phones."""

from __future__ import annotations

import pytest

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
    assert "Mode: none → Your own endpoint" in text
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
