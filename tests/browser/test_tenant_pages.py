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
