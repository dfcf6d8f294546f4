"""The Routes page reads the seed's `llm_config:` documents and exports to them, in a real browser."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOC = textwrap.dedent(
    """\
    llm_config:
      default:
        provider: anthropic
        model: claude-sonnet-4.5
      tasks:
        rule_extraction:
          provider: openai
          model: gpt-5-mini
          temperature: 0
    """
)


def test_routes_page_imports_and_exports_llm_config(page, platform_allowed):
    signup(page)
    page.goto("/routes/")
    page.fill("#r-yaml", "llm_config:\n  provider: openai\n")
    page.click("button[value=import]")
    page.wait_for_selector(".errorlist")
    assert "model is required" in page.inner_text(".errorlist")
    page.fill("#r-yaml", DOC)
    page.click("button[value=import]")
    page.wait_for_selector("text=route:rule_extraction")
    assert page.locator("text=route:default").count() >= 1
    with page.expect_download() as download:
        page.click("button[value=export_llm_config]")
    text = Path(download.value.path()).read_text()
    doc = yaml.safe_load(text)
    assert doc["llm_config"]["tasks"]["rule_extraction"] == {
        "provider": "openai",
        "model": "gpt-5-mini",
        "temperature": 0.0,
    }
    assert doc["llm_config"]["default"]["model"] == "claude-sonnet-4.5"
    shot(page, "routes-llm-config")


def test_a_route_falls_back_on_content_policy_when_its_box_is_ticked(page, platform_allowed):
    from llm.models import Route

    signup(page)
    page.goto("/routes/")
    page.fill("#r-name", "lenient")
    page.fill("#r-targets", "openai:gpt-5-mini\nanthropic:claude-haiku-4.5")
    page.check("#r-fallback-policy")
    page.click("button[value=save]")
    page.wait_for_selector("text=route:lenient")
    assert Route.objects.unscoped().get(name="lenient").fallback_on == ["content_policy"]
    page.goto(f"/routes/?edit={Route.objects.unscoped().get(name='lenient').id}")
    assert page.is_checked("#r-fallback-policy")
    page.uncheck("#r-fallback-policy")
    page.click("button[value=save]")
    page.wait_for_selector("text=route:lenient")
    assert Route.objects.unscoped().get(name="lenient").fallback_on == []
