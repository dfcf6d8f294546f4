"""The Content-Security-Policy is sent on every page and no page breaks it (no blocked script, style or frame)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every violation is pushed into window.__csp before any of the page's own code runs.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || "") + ":" +
                    e.lineNumber);
});
"""

PAGES = [
    "/dashboard/",
    "/assistant/",
    "/usage/",
    "/usage/?range=24h",
    "/settings/llm/",
    "/routes/",
    "/agents/",
    "/keys/",
    "/members/",
    "/audit/",
    "/billing/",
    "/notifications/",
]
PUBLIC = ["/", "/login/", "/signup/", "/password-reset/"]


def _violations(page) -> list[str]:
    page.wait_for_load_state("load")
    return page.evaluate("window.__csp")


def test_no_page_violates_the_content_security_policy(page):
    page.add_init_script(RECORD_VIOLATIONS)
    signup(page)
    page.wait_for_url("**/dashboard/")
    seen: dict[str, list[str]] = {}
    for url in PAGES:
        response = page.goto(url)
        assert "script-src 'self'" in response.headers["content-security-policy"], url
        seen[url] = _violations(page)
    page.goto("/dashboard/")
    page.click("text=Log out")
    page.wait_for_url("**/")
    for url in PUBLIC:
        page.goto(url)
        seen[url] = _violations(page)
    assert not any(seen.values()), seen
    assert not [e for e in page.console_errors if "Content Security Policy" in e]


def test_the_workspace_switcher_still_switches_without_inline_script(page, live_server):
    from tenants.models import Membership, Tenant, User
    from tenants.services import tenant_create

    page.add_init_script(RECORD_VIOLATIONS)
    signup(page)
    page.wait_for_url("**/dashboard/")
    tenant_create(slug="second", name="Second Co", owner=User.objects.get(email="owner@example.com"))
    page.goto("/dashboard/")
    page.select_option("#tenant-switch", label="Second Co")
    page.wait_for_selector("text=Switched to Second Co")
    assert Membership.objects.unscoped().filter(tenant=Tenant.objects.get(slug="second")).exists()
    assert _violations(page) == []
