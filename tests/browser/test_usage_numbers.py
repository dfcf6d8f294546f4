"""Honest numbers on the dashboard and the usage page (#15 points 9–15), driven as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import shot, signup
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


def _model_mix(tenant) -> None:
    """The same catalog model managed (through OpenAI, and once through OpenRouter) and with the tenant's own
    key, and two calls a custom endpoint served (one under a catalog id, one under a `custom:` id)."""
    from datetime import timedelta

    from tests.usage.test_usage_numbers import _event

    managed = {"mode": "platform", "model": "openai:gpt-5-mini"}
    _event(tenant, ago=timedelta(hours=3), provider="openai", **managed)
    _event(tenant, ago=timedelta(hours=2), provider="openai", status="error", **managed)
    _event(tenant, ago=timedelta(hours=2), provider="openrouter", latency_ms=1200, **managed)
    _event(tenant, ago=timedelta(days=2), provider="openai", mode="byok", model="openai:gpt-5-mini")
    custom = {"mode": "custom", "provider": "openai_compatible"}
    _event(tenant, ago=timedelta(hours=1), model="openai:gpt-5-mini", **custom)
    _event(tenant, ago=timedelta(hours=1), model="custom:byok:openai:gpt-5", input_tokens=1_234_567, **custom)


def _inside(page, inner, outer) -> bool:
    a, b = inner.bounding_box(), outer.bounding_box()
    return a["x"] >= b["x"] - 0.5 and a["x"] + a["width"] <= b["x"] + b["width"] + 0.5


def test_by_model_has_one_row_per_model_as_the_user_knows_it(page):
    signup(page)
    _model_mix(_acme())
    page.goto("/usage/?range=7d")
    rows = page.locator("#by-model tbody tr")
    texts = [" | ".join(t.split("\t")) for t in rows.all_inner_texts()]
    assert rows.count() == 4, texts
    managed = rows.filter(has_text="Managed")
    assert managed.count() == 1
    assert "GPT-5 Mini" in managed.inner_text()
    assert "OpenAI, OpenRouter" in managed.inner_text()
    assert "3" in managed.locator("td[data-label=Requests]").inner_text()
    assert managed.locator("td[data-label=Errors]").inner_text().startswith("1")
    own = rows.filter(has_text="Own key")
    assert "GPT-5 Mini" in own.inner_text()
    endpoint = rows.filter(has_text="Custom endpoint")
    assert endpoint.count() == 2
    names = sorted(endpoint.locator(".model-name").all_inner_texts())
    assert names == [
        "gpt-5",
        "gpt-5-mini",
    ]  # what the endpoint was asked for, not catalog names or router ids
    assert "OpenAI-compatible endpoint" in endpoint.first.inner_text()
    assert "custom:" not in page.inner_text("#by-model")
    assert page.locator("#by-model th", has_text="Errors").count() == 1
    shot(page, "usage-by-model")
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        card = page.locator("#by-model")
        for cell in ("td[data-label=Cost]", "td[data-label=p95]"):
            for i in range(rows.count()):
                assert _inside(page, rows.nth(i).locator(cell), card), (width, cell, i)
        assert _inside(page, page.locator("#by-model table"), card), width


def test_csv_is_per_day_model_and_agent_with_a_header(page):
    import csv
    import io

    from tenants.audit import SYSTEM
    from tenants.services import agent_create
    from tests.usage.test_usage_numbers import _event

    signup(page)
    tenant = _acme()
    _model_mix(tenant)
    bot = agent_create(tenant=tenant, actor=SYSTEM, slug="support-bot")
    from datetime import timedelta

    _event(tenant, ago=timedelta(hours=3), agent=bot, mode="platform", provider="openai")
    page.goto("/usage/?range=7d")
    with page.expect_download() as download:
        page.click("text=CSV")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows, "rows under a header"
    assert list(rows[0])[:5] == ["day", "model", "model_name", "mode", "agent"]
    keys = [(r["day"], r["model"], r["mode"], r["agent"]) for r in rows]
    assert len(keys) == len(set(keys))
    bot_rows = [r for r in rows if r["agent"] == "support-bot"]
    assert [(r["model_name"], r["mode"], r["requests"]) for r in bot_rows] == [("GPT-5 Mini", "Managed", "1")]
    assert sum(int(r["requests"]) for r in rows) == 7
    empty = page.request.get("/usage.csv?range=24h&agent=support-bot&view=by_day")
    assert empty.text().splitlines()[0].startswith("day,requests,errors")


def test_24h_charts_by_hour_and_an_empty_range_says_so(page):
    import json

    signup(page)
    page.goto("/usage/?range=24h")
    assert page.locator("#usage-chart").count() == 0
    assert "No calls in this range" in page.inner_text("#usage-empty")
    _model_mix(_acme())
    page.goto("/usage/?range=24h")
    page.wait_for_selector("#usage-chart")
    assert "by hour" in page.inner_text("main")
    data = json.loads(page.locator("#chart-data").text_content())
    assert data["unit"] == "hour"
    assert len(data["labels"]) in (24, 25)
    assert sum(data["requests"]) == 5
    assert sorted(data["requests"])[-1] == 2


def test_numbers_read_the_same_on_every_page(page, provider_env):  # noqa: F811
    """1,180 calls read "1,180" on the dashboard as on the usage page, and the assistant's cost reads the same
    while the reply streams in as after a reload."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.plans import assign_plan
    from llm.config.versions import bump_config_version
    from llm.models import CatalogModel, UsageEvent

    signup(page)
    tenant = _acme()
    UsageEvent.objects.for_tenant(tenant).bulk_create(
        UsageEvent(
            tenant=tenant,
            request_id=f"bulk-{i}",
            created_at=timezone.now() - timedelta(hours=2),
            model="openai:gpt-5-mini",
            provider="openai",
            mode="byok",
            input_tokens=1000,
            latency_ms=1090,
        )
        for i in range(1180)
    )
    page.goto("/dashboard/")
    assert _stat(page, "Requests") == "1,180"
    assert _stat(page, "Tokens") == "1,180,000 / 0"
    page.goto("/usage/?range=7d")
    assert _stat(page, "Requests") == "1,180"
    assert _stat(page, "p95 latency") == "1,090 / 1,090 ms"

    assign_plan(tenant=tenant, plan_slug="enterprise")
    CatalogModel.objects.filter(pk="openai:gpt-5-mini").update(input_usd_per_mtok=0, output_usd_per_mtok=0)
    bump_config_version()
    page.goto("/assistant/")
    page.select_option("#new-model", "openai:gpt-5-mini")
    page.click("button:has-text('New chat')")
    page.wait_for_url("**/assistant/*/")
    page.fill("#content", "Hello there")
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-status=done] .meta")
    live = page.inner_text(".msg.assistant .meta")
    assert live.endswith("12 in / 5 out · $0.00")
    page.reload()
    assert page.inner_text(".msg.assistant .meta") == live


def test_dashboard_and_usage_show_the_cost_on_the_baseline_model(page):
    from tests.usage.test_usage_numbers import _million_in_100k_out

    signup(page)
    _million_in_100k_out(_acme())
    for url in ("/dashboard/", "/usage/?range=7d"):
        page.goto(url)
        box = page.locator("[data-cost-comparison]")
        text = " ".join(box.inner_text().split())
        assert "Compared with Claude Sonnet 4.5" in text, url
        assert "These calls cost $0.45; on Claude Sonnet 4.5 they would have cost $4.50" in text, url
        assert "you saved $4.05 (90.0 %)" in text, url
    page.set_viewport_size({"width": 390, "height": 844})
    assert _inside(page, page.locator("[data-cost-comparison] p"), page.locator("[data-cost-comparison]"))
