"""Issue #15: the LLM configuration as a first-time user meets it: an unconfigured workspace says so everywhere, the
modal keeps each mode's input apart, fallbacks are an ordered list, Discover models speaks both wire formats, and
routes survive a change of mode."""

from __future__ import annotations

import re

import httpx
import pytest

from llm.models import Preferences
from tenants.audit import SYSTEM
from tenants.keys import apikey_create
from tenants.models import Tenant
from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ENV_NAMES = re.compile(r"[A-Z]+_(API_KEY|BASE_URL)")


@pytest.fixture
def platform_keys(monkeypatch, fake):
    """The installation has platform keys (OpenRouter's reaches the default model): an unconfigured Free workspace
    must still be told it is unconfigured, not that its plan lacks a model it never chose."""
    from llm.calls import hot_cache
    from llm.calls.resolution import forget_env

    monkeypatch.setenv("OPENROUTER_BASE_URL", fake.url + "/v1")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-test-platform-router")
    forget_env()
    hot_cache.clear()
    yield fake
    forget_env()


def _gateway_key(slug: str = "acme") -> str:
    tenant = Tenant.objects.get(slug=slug)
    _, plaintext = apikey_create(tenant=tenant, actor=SYSTEM, name="backend", scopes=["gateway"])
    return plaintext


@pytest.mark.parametrize("keys_on_platform", [False, True], ids=["no-platform-keys", "platform-keys"])
def test_an_unconfigured_free_workspace_is_unconfigured_everywhere(
    page, gateway_url, request, keys_on_platform
):
    if keys_on_platform:
        request.getfixturevalue("platform_keys")
    signup(page)

    # Dashboard and settings page: the same words, with a link that opens the modal.
    dashboard = page.inner_text("#llm-summary")
    assert "Not configured yet" in dashboard
    page.goto("/settings/llm/")
    summary = page.inner_text("#llm-summary")
    assert "Not configured yet" in summary
    assert "platform" not in summary.lower()
    assert "claude-sonnet" not in summary
    page.click("#llm-summary >> text=Configure the LLM")
    page.wait_for_selector("#llm-modal[open]")

    # The modal opens on the first mode the workspace can use, with nothing preselected it never chose.
    assert page.is_disabled("input[name=mode][value=platform]")
    assert not page.is_checked("input[name=mode][value=platform]")
    assert page.is_checked("input[name=mode][value=byok]")
    assert page.input_value("#model") == ""
    assert page.inner_text("#model-info").strip() == ""
    shot(page, "llm-modal-first-use")

    # The assistant says the same thing, without a model the user never chose or a server variable.
    page.goto("/assistant/")
    assert "Not configured yet" in page.inner_text("#llm-not-configured")
    assert page.get_attribute("#llm-not-configured a", "href").endswith("/settings/llm/?configure")
    page.click("button:has-text('New chat')")
    page.wait_for_url("**/assistant/*/")
    page.fill("#content", "Hello there")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.error")
    error = page.inner_text(".msg.assistant.error")
    assert "No LLM is configured for this workspace yet" in error
    assert "/settings/llm/" in error
    assert "claude-sonnet" not in error
    assert not ENV_NAMES.search(error)

    # The gateway: DESIGN.md's error shape, the same message.
    key = _gateway_key()
    for model in ("default", "anthropic:claude-sonnet-4.5"):
        answer = httpx.post(
            gateway_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            timeout=20,
        )
        assert answer.status_code == 400, answer.text
        body = answer.json()["error"]
        assert body["type"] == "invalid_request_error"
        assert body["code"] == "llm_not_configured"
        assert body["message"].startswith("No LLM is configured for this workspace yet")
        assert "/settings/llm/?configure" in body["message"]
        assert not ENV_NAMES.search(body["message"])
        assert "claude-sonnet" not in body["message"]
    assert Preferences.objects.unscoped().count() == 0


def test_once_configured_every_surface_shows_the_settings(page):
    signup(page)
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-test-byok-5678")
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Bring your own key')")
    assert "Not configured" not in page.inner_text("main")
    page.goto("/dashboard/")
    assert "Not configured" not in page.inner_text("#llm-summary")
    assert "openai:gpt-5-mini" in page.inner_text("#llm-summary")
    page.goto("/assistant/")
    assert not page.is_visible("#llm-not-configured")


@pytest.fixture
def openai_at_fake(monkeypatch, fake):
    """Workspace keys for OpenAI reach the fake provider (no platform key on the installation)."""
    from llm.calls import hot_cache
    from llm.calls.resolution import forget_env

    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    forget_env()
    hot_cache.clear()
    yield fake
    forget_env()


def _save_custom(page, base_url: str, model: str) -> None:
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=custom]")
    page.fill("#ce_base_url", base_url)
    page.fill("#ce_model", model)
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Enterprise custom')")


def test_a_mode_change_warns_about_the_routes_it_breaks_and_calls_fall_through(
    page, gateway_url, openai_at_fake
):
    from llm.metering import queue as metering
    from llm.models import UsageEvent

    fake = openai_at_fake
    signup(page)
    # An OpenAI key saved earlier (what the route's second target will use once the workspace is on BYOK).
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-test-byok-5678")
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Bring your own key')")
    _save_custom(page, fake.url + "/v1", "gpt-4o-mini")

    page.goto("/routes/")
    page.fill("#r-name", "support")
    page.fill("#r-targets", "custom:gpt-4o-mini\nopenai:gpt-5-mini")
    page.click("button:has-text('Save route')")
    page.wait_for_selector("text=Route “support” saved")
    assert not page.is_visible("[data-unreachable]")

    # Back to BYOK: the route's custom target cannot be reached any more; the save says so before reloading.
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.click("#save")
    page.wait_for_selector("#route-warnings:visible")
    warning = page.inner_text("#route-warnings")
    assert "route:support" in warning
    assert "custom:gpt-4o-mini" in warning
    assert "fall through" in warning
    shot(page, "llm-modal-route-warning")
    page.click("#llm-modal [data-close]")
    page.wait_for_selector("[data-summary=mode]:has-text('Bring your own key')")
    assert "route:support" in page.inner_text("#routes-unreachable")

    # The Routes page marks the target with the reason.
    page.goto("/routes/")
    row = page.locator("tr[data-route=support]")
    assert "Primary skipped" in row.inner_text()
    assert row.locator("[data-unreachable]").count() == 1
    assert "custom:gpt-4o-mini" in row.locator("[data-unreachable] >> xpath=..").inner_text()
    assert row.locator("[data-reason]").inner_text().strip()
    shot(page, "routes-marked")
    page.set_viewport_size({"width": 390, "height": 844})
    assert row.locator("[data-unreachable]").is_visible()
    assert row.locator("[data-reason]").is_visible()

    # A call through the route falls through to its second target instead of a 400.
    fake.reset()
    key = _gateway_key()
    answer = httpx.post(
        gateway_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "route:support", "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"].startswith("Hello from fake")
    assert [r[2]["model"] for r in fake.requests if r[0].endswith("/chat/completions")] == ["gpt-5-mini"]
    metering.flush()
    assert UsageEvent.objects.unscoped().get(request_type="chat").model == "openai:gpt-5-mini"


def _fallbacks(page) -> list[str]:
    return page.eval_on_selector_all("#fallbacks li", "items => items.map(li => li.dataset.model)")


def _add_fallback(page, model: str) -> None:
    page.select_option("#fallback-pick", model)
    page.click("#fallback-add")


@pytest.mark.parametrize("width", [1280, 390])
def test_fallbacks_are_an_ordered_list_saved_in_the_users_order(page, width):
    from llm.config import catalog

    page.set_viewport_size({"width": width, "height": 844})
    signup(page)
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-or-v1-test-router-1234")  # an OpenRouter key reaches every fallback below
    page.click("summary:has-text('Advanced')")
    assert page.is_visible("#fallback-pick")
    offered = page.eval_on_selector_all("#fallback-pick option", "os => os.map(o => o.value).filter(Boolean)")
    assert "openai:gpt-5-mini" not in offered, "the primary is no fallback"
    assert all(catalog.get_catalog().model(m) is not None for m in offered)

    _add_fallback(page, "anthropic:claude-haiku-4.5")
    _add_fallback(page, "google:gemini-2.5-flash")
    _add_fallback(page, "openai:gpt-5")
    assert _fallbacks(page) == ["anthropic:claude-haiku-4.5", "google:gemini-2.5-flash", "openai:gpt-5"]
    page.click("#fallbacks button[aria-label='Move google:gemini-2.5-flash up']")
    assert _fallbacks(page) == ["google:gemini-2.5-flash", "anthropic:claude-haiku-4.5", "openai:gpt-5"]
    page.click("#fallbacks button[aria-label='Remove openai:gpt-5']")
    assert _fallbacks(page) == ["google:gemini-2.5-flash", "anthropic:claude-haiku-4.5"]
    assert page.is_disabled("#fallbacks button[aria-label='Move google:gemini-2.5-flash up']")
    assert page.is_disabled("#fallbacks button[aria-label='Move anthropic:claude-haiku-4.5 down']")
    box = page.locator("#fallbacks button[aria-label='Remove anthropic:claude-haiku-4.5']").bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= width, "the row's buttons fit the screen"
    shot(page, f"llm-fallbacks-{width}")
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Bring your own key')")

    saved = Preferences.objects.unscoped().get(agent=None)
    assert saved.fallbacks == ["google:gemini-2.5-flash", "anthropic:claude-haiku-4.5"]
    api = page.request.get("/api/llm/preferences").json()
    assert api["fallbacks"] == ["google:gemini-2.5-flash", "anthropic:claude-haiku-4.5"]
    assert re.search(r"gemini-2\.5-flash\s*→\s*anthropic:claude-haiku-4\.5", page.inner_text("#llm-summary"))
    page.click("#open-llm-config")
    assert _fallbacks(page) == ["google:gemini-2.5-flash", "anthropic:claude-haiku-4.5"]


def test_custom_mode_fallbacks_are_names_the_endpoint_knows(page, fake):
    signup(page)
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=custom]")
    page.fill("#ce_base_url", fake.url + "/v1")
    page.fill("#ce_model", "llama3:8b")
    page.click("summary:has-text('Advanced')")
    assert not page.is_visible("#fallback-pick"), "no catalog models in custom mode"
    page.fill("#fallback-name", "qwen2.5:7b")
    page.press("#fallback-name", "Enter")
    page.fill("#fallback-name", "gpt-fake")
    page.click("#fallback-add")
    page.click("#fallbacks button[aria-label='Move gpt-fake up']")
    assert _fallbacks(page) == ["gpt-fake", "qwen2.5:7b"]
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Enterprise custom')")
    saved = Preferences.objects.unscoped().get(agent=None)
    assert (saved.model, saved.fallbacks) == ("llama3:8b", ["gpt-fake", "qwen2.5:7b"])


def test_each_mode_shows_what_is_saved_and_keeps_its_unsaved_input_until_close(page, openai_at_fake):
    fake = openai_at_fake
    signup(page)
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-test-byok-5678")
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Bring your own key')")
    _save_custom(page, fake.url + "/v1", "gpt-4o-mini")
    before = list(Preferences.objects.unscoped().values("mode", "model", "fallbacks"))

    page.click("#open-llm-config")
    assert page.is_checked("input[name=mode][value=custom]")
    assert page.input_value("#ce_model") == "gpt-4o-mini"
    page.check("input[name=mode][value=byok]")
    assert page.input_value("#model") == "", "no model the user never chose for this mode"
    assert page.inner_text("#model-info").strip() == ""
    assert "sk-…5678" in page.inner_text("#api-key-saved"), "the saved key is shown, not 'No key saved yet'"
    page.select_option("#model", "openai:gpt-5-mini")
    hint = page.inner_text("#api-key-saved")
    assert "OpenAI" in hint
    assert "sk-…5678" in hint
    page.click("#test-connection")
    page.wait_for_selector(".test-result.ok")  # the saved key the hint names
    page.click("summary:has-text('Advanced')")
    _add_fallback(page, "openai:gpt-5")

    page.check("input[name=mode][value=custom]")
    assert page.input_value("#ce_model") == "gpt-4o-mini"
    assert _fallbacks(page) == []
    page.fill("#ce_model", "llama3:8b")
    page.check("input[name=mode][value=byok]")
    assert page.input_value("#model") == "openai:gpt-5-mini"
    assert _fallbacks(page) == ["openai:gpt-5"]
    page.check("input[name=mode][value=custom]")
    assert page.input_value("#ce_model") == "llama3:8b"

    page.click("#llm-modal [data-close]")  # closed unsaved: reopened, the modal shows what is saved
    page.click("#open-llm-config")
    assert page.is_checked("input[name=mode][value=custom]")
    assert page.input_value("#ce_model") == "gpt-4o-mini"
    page.check("input[name=mode][value=byok]")
    assert page.input_value("#model") == ""
    assert _fallbacks(page) == []
    assert list(Preferences.objects.unscoped().values("mode", "model", "fallbacks")) == before


@pytest.mark.parametrize("width", [1280, 390])
def test_discover_models_speaks_openai_and_ollama_and_never_shows_json(page, fake, width):
    page.set_viewport_size({"width": width, "height": 844})
    signup(page)
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=custom]")

    # A vLLM server behind a token: without it, the refusal in words.
    page.fill("#ce_base_url", fake.url + "/vllm/v1")
    page.click("#discover")
    page.wait_for_selector("#discovered:not(:empty):not(:has(.spinner))")
    said = page.inner_text("#discovered")
    assert "refused" in said
    assert "{" not in said
    assert "[" not in said

    page.fill("#ce_api_key", "sk-test-vllm-1234")
    page.click("#discover")
    page.wait_for_selector("[data-endpoint-model='Qwen/Qwen2.5-7B-Instruct']")
    assert page.eval_on_selector_all("[data-endpoint-model]", "bs => bs.map(b => b.textContent)") == [
        "Qwen/Qwen2.5-7B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
    ]
    page.click("[data-endpoint-model='Qwen/Qwen2.5-7B-Instruct']")
    assert page.input_value("#ce_model") == "Qwen/Qwen2.5-7B-Instruct"
    box = page.locator("[data-endpoint-model='meta-llama/Llama-3.1-8B-Instruct']").bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= width
    shot(page, f"llm-discover-{width}")
    page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Enterprise custom')")
    saved = Preferences.objects.unscoped().get(agent=None)
    assert saved.model == "Qwen/Qwen2.5-7B-Instruct"

    # Reopened, the saved token is used for the same server; the fallback field suggests its models.
    page.click("#open-llm-config")
    page.click("#discover")
    page.wait_for_selector("[data-endpoint-model='meta-llama/Llama-3.1-8B-Instruct']")
    assert page.eval_on_selector_all("#endpoint-models option", "os => os.map(o => o.value)") == [
        "Qwen/Qwen2.5-7B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
    ]

    # An Ollama server answers /api/tags; a URL that is neither says what to check.
    page.fill("#ce_base_url", fake.url)
    page.click("#discover")
    page.wait_for_selector("[data-endpoint-model='qwen2.5:7b']")
    page.fill("#ce_base_url", fake.url + "/nothing/v1")
    page.click("#discover")
    page.wait_for_selector("#discovered:not(:empty):not(:has(.spinner))")
    said = page.inner_text("#discovered")
    assert "Check the base URL" in said
    assert "{" not in said
