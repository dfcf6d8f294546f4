"""Keys scoped to what they may call (#16) in a real browser: the allow-list on the key form, the keys list and
the agent page; a key's Rotate action showing the new secret once; both at desktop and phone width."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def provider_env(monkeypatch, fake):
    from llm.calls import hot_cache
    from llm.calls.resolution import forget_env

    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    forget_env()
    hot_cache.clear()
    yield fake
    forget_env()


def _create_key(page, name: str, allowed: str = "") -> str:
    page.goto("/keys/")
    page.fill("#id_name", name)
    page.check("input[value=gateway]")
    if allowed:
        page.fill("#id_allowed_models", allowed)
    page.click("text=Create key")
    return page.inner_text("#new-key-value").strip()


def _no_sideways_scroll(page) -> None:
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1


def _within_the_screen(page, locator) -> None:
    """Visible without scrolling the table sideways (on a phone the table scrolls; on a desktop it must fit)."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box is not None
    assert locator.is_visible()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= page.viewport_size["width"]


def _chat(gateway_url: str, key: str, model: str) -> httpx.Response:
    return httpx.post(
        gateway_url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=20,
    )


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_a_key_made_with_an_allow_list_may_call_only_those(page, provider_env, gateway_url, viewport):
    from billing.plans import assign_plan
    from tenants.models import Tenant

    if viewport:
        page.set_viewport_size(viewport)
    signup(page)
    assign_plan(tenant=Tenant.objects.get(slug="acme"), plan_slug="enterprise")

    page.goto("/keys/")
    page.fill("#id_name", "bad-list")
    page.fill("#id_allowed_models", "gpt 4")
    page.click("text=Create key")
    error = page.locator("#id_allowed_models-errors")
    assert "not a model id" in error.inner_text()
    assert error.is_visible()
    assert page.locator("#new-key").count() == 0

    page.fill("#id_name", "openai-only")
    page.fill("#id_allowed_models", "openai:*\nroute:support")
    page.click("text=Create key")
    key = page.inner_text("#new-key-value").strip()
    row = page.locator("tr", has_text="openai-only")
    assert row.locator("td.may-call").inner_text() == "openai:*, route:support"
    _no_sideways_scroll(page)
    shot(page, "keys-allow-list" + ("-phone" if viewport else ""))

    assert _chat(gateway_url, key, "openai:gpt-5-mini").status_code == 200
    refused = _chat(gateway_url, key, "anthropic:claude-haiku-4.5")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "This key may call only: openai:*, route:support."


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_rotate_shows_the_new_secret_once_and_the_old_one_keeps_working_for_the_grace(page, viewport):
    from tenants.keys import key_info

    if viewport:
        page.set_viewport_size(viewport)
    signup(page)
    old = _create_key(page, "backend")
    page.goto("/keys/")
    row = page.locator("tr", has_text="backend")
    _within_the_screen(page, row.locator("summary", has_text="Rotate"))
    row.locator("summary", has_text="Rotate").click()
    row.get_by_label("Current secret keeps working for").select_option(label="1 hour")
    rotate = row.locator("button", has_text="Rotate now")
    _within_the_screen(page, rotate)
    page.once("dialog", lambda d: d.accept())
    rotate.click()
    page.wait_for_selector("#new-key")
    assert page.url.endswith("/keys/"), (
        "post/redirect/get: the secret is shown on a plain GET of the keys page"
    )
    new = page.inner_text("#new-key-value").strip()
    assert re.fullmatch(r"byok-[A-Za-z0-9_\-]{40,}", new)
    assert new != old
    notice = page.inner_text("#new-key")
    assert "will not be shown again" in notice
    assert "previous secret keeps working until" in notice
    assert "Previous secret works until" in page.locator("tr", has_text="backend").inner_text()
    _no_sideways_scroll(page)
    shot(page, "keys-rotated" + ("-phone" if viewport else ""))

    assert key_info(old).is_valid()
    assert key_info(new).is_valid()
    assert key_info(new).id == key_info(old).id

    page.reload()
    assert page.locator("#new-key").count() == 0
    assert new not in page.content()
    assert new[-4:] in page.content()  # the masked form of the new secret


def test_an_agents_allow_list_is_set_on_its_page_and_shown_with_its_keys(page):
    signup(page)
    page.click("nav >> text=Agents")
    page.fill("#id_slug", "support-bot")
    page.click("text=Create agent")
    page.wait_for_url("**/agents/support-bot/")
    page.fill("#id_allowed_models", "route:support, openai:gpt-5-mini")
    page.click("button[name=action][value=save]")
    page.wait_for_selector("text=Agent saved.")
    assert page.input_value("#id_allowed_models") == "route:support\nopenai:gpt-5-mini"

    page.fill("#id_allowed_models", "openai:")
    page.click("button[name=action][value=save]")
    assert "not a model id" in page.inner_text("#id_allowed_models-errors")

    page.goto("/keys/")
    page.fill("#id_name", "bot-key")
    page.select_option("#id_agent", label="support-bot")
    page.click("text=Create key")
    cell = page.locator("tr", has_text="bot-key").locator("td.may-call")
    assert cell.inner_text() == "any model\nagent: route:support, openai:gpt-5-mini"
