"""The LLM settings modal prices a custom endpoint: input, output, cache-read and cache-write, saved and shown
again after a reload; a bad cache price is said next to its field and nothing is saved."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llm.models import Credential, Preferences
from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PRICES = {
    "#ce_input_usd_per_mtok": "3",
    "#ce_output_usd_per_mtok": "15",
    "#ce_cache_read_usd_per_mtok": "0.3",
    "#ce_cache_write_usd_per_mtok": "3.75",
}


def _open_custom(page) -> None:
    page.click("#open-llm-config")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=custom]")


def test_custom_endpoint_cache_prices_are_saved_and_shown_again(page, fake):
    signup(page)
    page.goto("/settings/llm/")
    _open_custom(page)
    for selector in PRICES:
        assert page.is_visible(selector)
    assert page.get_attribute("#ce_cache_read_usd_per_mtok", "placeholder") == "the input price"
    page.fill("#ce_base_url", f"{fake.url}/v1")
    page.fill("#ce_model", "llama3")
    page.fill("#ce_input_usd_per_mtok", "3")
    page.fill("#ce_output_usd_per_mtok", "15")
    page.fill("#ce_cache_read_usd_per_mtok", "-1")
    page.fill("#ce_cache_write_usd_per_mtok", "3.75")
    page.click("#save")
    page.wait_for_selector("[data-error='custom_endpoint.cache_read_usd_per_mtok'] li", state="visible")
    assert "between 0 and 10000" in page.inner_text("[data-error='custom_endpoint.cache_read_usd_per_mtok']")
    assert "Cache-read price" in page.inner_text("#form-error")
    assert not Preferences.objects.unscoped().exists()
    assert not Credential.objects.unscoped().exists()

    page.fill("#ce_cache_read_usd_per_mtok", "0.3")  # corrected: its error goes at once
    assert page.inner_text("[data-error='custom_endpoint.cache_read_usd_per_mtok']") == ""
    shot(page, "llm-modal-endpoint-prices")
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Enterprise custom endpoint')")
    endpoint = Credential.objects.unscoped().get()
    assert (
        endpoint.input_usd_per_mtok,
        endpoint.output_usd_per_mtok,
        endpoint.cache_read_usd_per_mtok,
        endpoint.cache_write_usd_per_mtok,
    ) == (Decimal(3), Decimal(15), Decimal("0.3"), Decimal("3.75"))

    page.reload()
    page.click("#open-llm-config")
    page.wait_for_selector("#llm-modal[open]")
    assert page.is_checked("input[name=mode][value=custom]")
    for selector, value in PRICES.items():
        assert page.input_value(selector) == value, selector

    # Cleared, a cache price is the input price again, and the modal shows it empty.
    page.fill("#ce_cache_write_usd_per_mtok", "")
    with page.expect_navigation():  # saved, the page reloads
        page.click("#save")
    endpoint.refresh_from_db()
    assert endpoint.cache_write_usd_per_mtok is None
    assert endpoint.cache_read_usd_per_mtok == Decimal("0.3")
    page.click("#open-llm-config")
    page.wait_for_selector("#llm-modal[open]")
    assert page.input_value("#ce_cache_write_usd_per_mtok") == ""
    assert page.input_value("#ce_cache_read_usd_per_mtok") == "0.3"
