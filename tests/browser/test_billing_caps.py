"""The billing page's caps as a first-time user meets them: dollars beside TCU as they type, the plan's default
told apart from a cap of their own, and a cap that would stop paid calls at once confirmed before it is saved."""

from __future__ import annotations

import pytest

from billing.caps import limits_for
from llm.limits import budget
from tenants.models import Tenant
from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def save(page) -> None:
    with page.expect_navigation():
        page.click("button:has-text('Save caps')")
    page.wait_for_selector("text=Caps saved")


def test_caps_show_dollars_as_typed_tell_default_from_own_and_confirm_a_blocking_cap(page, monkeypatch):
    signup(page)
    tenant = Tenant.objects.get(slug="acme")
    page.goto("/billing/")

    # Nothing set yet: both fields say they follow the plan's default, and are empty (not a copy of it)
    assert page.input_value("#id_hard_tcu") == ""
    assert "Plan default" in page.inner_text("[data-cap-source=hard_tcu]")
    assert "Plan default" in page.inner_text("[data-cap-source=warn_tcu]")

    # Dollars follow the typing (100,000 TCU = $1)
    page.fill("#id_hard_tcu", "250000")
    page.wait_for_selector("[data-usd-for=id_hard_tcu]:has-text('$2.50')")
    page.fill("#id_warn_tcu", "1234567")
    page.wait_for_selector("[data-usd-for=id_warn_tcu]:has-text('$12.35')")

    # A cap at or below this month's usage (0 here) refuses paid calls at once: asked, not saved silently
    page.fill("#id_warn_tcu", "0")
    page.fill("#id_hard_tcu", "0")
    page.wait_for_selector("[data-cap-warning]:has-text('already used this month')")
    page.click("button:has-text('Save caps')")
    page.wait_for_selector("#id_hard_tcu-errors")
    assert "would be refused" in page.inner_text("#id_hard_tcu-errors")
    assert limits_for(tenant.id).own_hard_tcu is None, "nothing saved before the confirmation"
    shot(page, "caps-confirm")
    page.check("#id_confirm")
    save(page)
    assert (limits_for(tenant.id).own_warn_tcu, limits_for(tenant.id).own_hard_tcu) == (0, 0)
    assert "Your own cap" in page.inner_text("[data-cap-source=hard_tcu]")
    assert page.input_value("#id_hard_tcu") == "0"

    # A cap above what is used saves at once; emptying the field goes back to the plan's default
    monkeypatch.setattr(budget.RedisBackend, "used", lambda self, scope, period, **kw: 40_000, raising=True)
    page.fill("#id_warn_tcu", "")
    page.fill("#id_hard_tcu", "50000")
    save(page)
    assert limits_for(tenant.id).own_hard_tcu == 50_000
    assert "$0.50" in page.inner_text("[data-cap-source=hard_tcu]")
    page.fill("#id_hard_tcu", "")
    save(page)
    assert limits_for(tenant.id).own_hard_tcu is None
    assert "Plan default" in page.inner_text("[data-cap-source=hard_tcu]")
