"""Failures explained to a first-time user: the connection test does not blame a URL they never typed, and the
assistant shows what failed, what to do and where (a link), including Ollama's own failures."""

from __future__ import annotations

import pytest

from llm.calls import hot_cache, resolution
from tests.browser.conftest import shot, signup
from tests.fakes.ollama_failures import NOT_PULLED, FailingOllama

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def unreachable_openai(monkeypatch):
    """OpenAI's address as this server knows it does not resolve (a server without working DNS)."""
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.invalid/v1")
    resolution.forget_env()
    hot_cache.clear()
    yield
    resolution.forget_env()


@pytest.fixture
def ollama():
    server = FailingOllama().start()
    yield server
    server.stop()


def _byok(page) -> None:
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-test-byok-" + "dns1")


def _ask(page, text: str):
    page.goto("/assistant/")
    page.click("button:has-text('New chat')")
    page.wait_for_url("**/assistant/*/")
    page.fill("#content", text)
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-status=error]")
    return page.locator(".msg.assistant.error").last


def test_byok_test_and_assistant_on_an_unresolvable_provider_blame_the_server_not_the_user(
    page, unreachable_openai
):
    signup(page)
    _byok(page)
    page.click("#test-connection")
    page.wait_for_selector(".test-result.fail")
    result = page.inner_text("#test-result")
    assert "spelling" not in result
    assert "This server could not look up api.openai.invalid" in result
    with page.expect_navigation():  # saved, the settings page reloads
        page.click("#save")
    page.wait_for_selector("text=sk-…dns1")

    reply = _ask(page, "Hello?")
    assert "DNS lookup failed" in reply.inner_text()
    assert "Nothing you entered is wrong" in reply.locator(".msg-hint").inner_text()
    assert reply.locator("a.msg-help").get_attribute("href") == "/settings/llm/"
    shot(page, "assistant-dns-hint")
    page.reload()  # the same explanation when the chat is opened again
    assert "Nothing you entered is wrong" in page.locator(".msg.assistant.error .msg-hint").last.inner_text()


def test_the_assistant_tells_to_pull_a_model_ollama_does_not_have(page, ollama):
    signup(page)
    ollama.failure = NOT_PULLED
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.check("input[name=mode][value=custom]")
    page.select_option("#ce_kind", "openai_compatible")  # Ollama's OpenAI-compatible API
    page.fill("#ce_base_url", ollama.url + "/v1")
    page.fill("#ce_model", "llama3.1:70b")
    with page.expect_navigation():  # saved, the settings page reloads
        page.click("#save")
    reply = _ask(page, "Hi")
    assert "`ollama pull llama3.1:70b`" in reply.locator(".msg-hint").inner_text()
    assert reply.locator("a.msg-help").inner_text() == "Open LLM settings"
