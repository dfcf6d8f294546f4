"""The routes page refuses a target the gateway would refuse (`not-a-model`), next to the field, and saves nothing."""

from __future__ import annotations

import pytest

from llm.models import Route
from tests.browser.conftest import signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_route_to_not_a_model_is_refused_on_the_page(page):
    signup(page)
    page.goto("/routes/")
    page.fill("#r-name", "chat")
    page.fill("#r-targets", "not-a-model")
    page.click("button:has-text('Save route')")
    page.wait_for_selector(".field.has-error:has(#r-targets)")
    assert "not-a-model" in page.inner_text(".field.has-error:has(#r-targets)")
    assert not Route.objects.unscoped().exists()
