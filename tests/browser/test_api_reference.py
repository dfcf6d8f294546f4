"""#15 point 23: the API reference renders inside the app's layout from the project's own files, offline (no
request leaves this machine), at desktop and phone width."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_reference_renders_offline_inside_the_layout(page, live_server):
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or ""))
    signup(page)
    page.click("nav >> text=API reference")
    page.wait_for_url("**/api-reference/")
    page.wait_for_selector(".swagger-ui .opblock-tag")  # the operations, grouped, drawn from the schema
    assert page.locator("#sidenav").is_visible()  # the app's own navigation around it
    assert page.locator(".swagger-ui .opblock-tag >> text=keys").count() >= 1
    page.click(".swagger-ui .opblock-tag >> text=keys")
    page.wait_for_selector(".swagger-ui .opblock-summary-path:has-text('/api/keys')")
    assert hosts <= {urlsplit(live_server.url).hostname}, f"requests left this machine: {hosts}"
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "api-reference")
