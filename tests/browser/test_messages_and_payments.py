"""Messages a user can read at their own pace, and payment actions that say why they cannot work: the page's
messages stay inline until dismissed, error toasts stay until closed, and with no payment provider set up the
paid actions are disabled with the reason beside them instead of leading nowhere."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Plan
from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_page_messages_stay_inline_until_dismissed(page):
    signup(page)
    page.clock.install()
    page.goto("/billing/")
    page.fill("#id_warn_tcu", "10")
    page.fill("#id_hard_tcu", "20")
    with page.expect_navigation():
        page.click("button:has-text('Save caps')")
    notice = page.locator("main .notice", has_text="Caps saved")
    notice.wait_for()
    page.clock.fast_forward(60_000)
    assert notice.is_visible(), "a message stays until the user dismisses it"
    assert page.locator(".toast").count() == 0, "nothing floats over the page"
    notice.get_by_role("button", name="Dismiss").click()
    notice.wait_for(state="detached")


def test_an_error_toast_stays_until_closed(page):
    signup(page)
    page.clock.install()
    page.route("**/api/llm/models*", lambda route: route.fulfill(status=200, body="not json"))
    page.goto("/settings/llm/")
    toast = page.locator(".toast.error", has_text="Could not load the model catalog")
    toast.wait_for()
    page.clock.fast_forward(60_000)
    assert toast.is_visible()
    toast.get_by_role("button", name="Dismiss").click()
    toast.wait_for(state="detached")


def test_without_payments_set_up_paid_actions_are_disabled_with_the_reason(page, settings):
    settings.STRIPE_API_KEY = ""
    Plan.objects.create(slug="team", name="Team", price_flat_usd=Decimal("49"), is_public=True, sort_order=5)
    signup(page)
    page.goto("/billing/")
    reason = "Payments are not set up on this installation yet"
    portal = page.locator("button:has-text('Payment method')")
    assert portal.is_disabled()
    assert reason in page.inner_text("#payments-off")
    switch = page.locator("button:has-text('Switch to Team')")
    assert switch.is_disabled()
    assert "payments, which are not set up" in page.inner_text("[data-plan=team]")
    for radio in page.locator("[data-managed-tiers] input[type=radio]").all():
        assert radio.is_disabled()
    assert "payments are not set up" in page.inner_text("#managed")
    assert page.locator("#managed button:has-text('Save managed LLM')").is_disabled()
    shot(page, "billing-payments-off")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.locator("#payments-off").is_visible()
