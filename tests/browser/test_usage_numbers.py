"""Honest numbers on the dashboard and the usage page (#15 points 9–15), driven as a user would."""

from __future__ import annotations

import pytest

from tests.browser.conftest import signup
from tests.browser.test_browser_flows import provider_env  # noqa: F401  (the fake provider behind platform keys)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _test_connection(page, key: str, verdict: str) -> None:
    page.fill("#api_key", key)
    page.click("#test-connection")
    page.wait_for_selector(f".test-result.{verdict}")


def test_connection_tests_are_not_traffic(page, provider_env):  # noqa: F811
    """Three Test-connection clicks (one refused) before any real call: no requests, no error rate, a line of
    their own on the dashboard and the usage page."""
    signup(page)
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    _test_connection(page, "sk-wrong-key-1234", "fail")
    _test_connection(page, "sk-test-byok-5678", "ok")
    page.click("#test-connection")
    page.wait_for_selector("#test-result.ok, .test-result.ok")

    page.goto("/dashboard/")
    assert page.inner_text(".card.stat >> nth=0").split()[-1] == "0"  # Requests (30 days)
    assert page.inner_text(".card.stat >> nth=3").split()[-2:] == ["0", "%"]  # Error rate
    tests_line = page.locator("[data-connection-tests]")
    assert "Connection tests: 3 (1 failed)" in tests_line.inner_text()

    page.goto("/usage/?range=24h")
    assert page.inner_text(".card.stat >> nth=0").split()[-1] == "0"
    assert "Connection tests: 3 (1 failed)" in page.inner_text("[data-connection-tests]")


def _acme():
    from tenants.models import Tenant

    return Tenant.objects.get(slug="acme")


def _stat(page, label: str) -> str:
    """The value of the stat card with this label."""
    return (
        page.locator(".card.stat", has=page.locator(".label", has_text=label)).locator(".value").inner_text()
    )


def test_usage_counts_events_the_schedule_has_not_rolled_up(page):
    from datetime import timedelta

    from django.utils import timezone

    from llm.usage.rollups import rollup_pending
    from tests.usage.test_usage_numbers import _event

    signup(page)
    tenant = _acme()
    for hours in (50, 30, 5, 2):
        _event(tenant, ago=timedelta(hours=hours))
    rollup_pending(now=timezone.now() - timedelta(hours=4))  # then beat stopped
    for hours in (40, 20, 3, 1):
        for _ in range(3):
            _event(tenant, ago=timedelta(hours=hours, minutes=5))
    page.goto("/usage/?range=all")
    assert _stat(page, "Requests") == "16"
    page.goto("/usage/?range=24h")
    assert _stat(page, "Requests") == "11"
    page.goto("/dashboard/")
    assert _stat(page, "Requests") == "16"


def test_p95_latency_is_what_the_calls_took(page):
    """160 ms calls showed a p95 of "250 ms" (the bound of the histogram bucket they fell in)."""
    from datetime import timedelta

    from llm.usage.rollups import rollup_pending
    from tests.usage.test_usage_numbers import _event

    signup(page)
    tenant = _acme()
    for i in range(20):
        _event(tenant, ago=timedelta(hours=2, minutes=i), latency_ms=160)
    rollup_pending()
    _event(tenant, ago=timedelta(minutes=1), latency_ms=160)  # and one live
    page.goto("/usage/?range=24h")
    assert _stat(page, "p95 latency").endswith("/ 160 ms")
    assert "160 ms" in page.locator("table").first.inner_text()
