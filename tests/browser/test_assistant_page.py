"""The assistant as a first-time user meets it: models by provider and name (no embedding model to pick), and Send
waiting while a reply is on its way."""

from __future__ import annotations

import json

import pytest

from billing.plans import assign_plan
from llm.calls import hot_cache
from llm.calls.resolution import forget_env
from tenants.models import Tenant
from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def platform_openai(monkeypatch, fake):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    forget_env()
    hot_cache.clear()
    yield fake
    forget_env()


def test_the_model_picker_groups_chat_models_by_provider_with_their_names(page, platform_openai):
    signup(page)
    assign_plan(tenant=Tenant.objects.get(slug="acme"), plan_slug="enterprise")
    page.goto("/assistant/")
    groups = page.locator("#new-model optgroup")
    labels = [groups.nth(i).get_attribute("label") for i in range(groups.count())]
    assert "OpenAI" in labels
    openai = page.locator("#new-model optgroup[label=OpenAI] option")
    names = openai.all_inner_texts()
    assert "GPT-5 Mini" in names, names
    assert not any(":" in name for name in names), "names, not raw ids"
    values = page.locator("#new-model option").evaluate_all("els => els.map(e => e.value)")
    assert "openai:gpt-5-mini" in values
    assert not [v for v in values if "embed" in v], values
    shot(page, "assistant-picker")


def test_send_waits_while_a_reply_streams(page, platform_openai):
    signup(page)
    assign_plan(tenant=Tenant.objects.get(slug="acme"), plan_slug="enterprise")
    page.goto("/assistant/")
    page.select_option("#new-model", "openai:gpt-5-mini")
    page.click("button:has-text('New chat')")
    page.wait_for_url("**/assistant/*/")

    # The reply is still streaming as far as the page can tell: the poll answers so until released
    streaming = json.dumps({"status": "streaming", "content": "Thinking", "id": 0})
    page.route(
        "**/api/llm/threads/*/messages/*",
        lambda route: route.fulfill(status=200, content_type="application/json", body=streaming),
    )
    page.fill("#content", "Hello there")
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-status=streaming]")
    assert page.locator("#send").is_disabled()
    page.fill("#content", "A second question")
    page.press("#content", "Enter")  # Enter does not send either
    assert page.locator(".msg.user").count() == 1
    page.unroute("**/api/llm/threads/*/messages/*")
    page.wait_for_selector(".msg.assistant[data-status=done]")
    assert page.locator("#send").is_enabled()
    page.click("#send")
    page.wait_for_selector(".msg.user >> nth=1")
