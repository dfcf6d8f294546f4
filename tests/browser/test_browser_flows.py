"""Real pages in a real browser: sign-up, keys, LLM configuration against a fake provider, dashboard, isolation."""

from __future__ import annotations

import re

import pytest

from llm.models import Preferences
from tests.browser.conftest import shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


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


def test_signup_then_agent_then_key_shown_once_and_revoked(page):
    signup(page)
    shot(page, "dashboard")
    page.click("nav >> text=Agents")
    page.fill("#id_slug", "support-bot")
    page.fill("#id_name", "Support bot")
    page.click("text=Create agent")
    page.wait_for_url("**/agents/support-bot/")
    shot(page, "agent-detail")
    page.goto("/keys/")
    page.fill("#id_name", "production")
    page.check("input[value=manage]")
    page.select_option("#id_agent", label="support-bot")
    page.click("text=Create key")
    key = page.inner_text("#new-key-value").strip()
    assert re.fullmatch(r"byok-[A-Za-z0-9_\-]{40,}", key)
    assert page.is_visible("button[data-copy=new-key-value]")
    assert "will not be shown again" in page.inner_text("#new-key")
    shot(page, "keys-created")
    page.goto("/keys/")
    assert key not in page.content()
    assert key[-4:] in page.content()
    page.once("dialog", lambda d: d.accept())
    page.click("button:has-text('Revoke')")
    page.wait_for_selector("text=revoked")
    for name in ("members", "audit", "usage", "billing"):
        page.goto(f"/{name}/")
        shot(page, name)
    page.goto("/")
    page.click("text=Log out")
    page.wait_for_url("**/")
    assert page.is_visible("text=Sign up")


def test_byok_configuration_with_test_connection_and_masked_key(page, provider_env):
    signup(page)
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    assert "$0.25" in page.inner_text("#model-info")
    page.fill("#api_key", "sk-wrong-key-1234")
    page.click("#test-connection")
    page.wait_for_selector(".test-result.fail")
    failure = page.inner_text("#test-result")
    assert failure.startswith("The key was refused.")  # in words, not the API's kind
    assert not failure.startswith("auth")
    assert "sk-wrong-key-1234" not in failure
    page.fill("#api_key", "sk-test-byok-5678")
    page.click("#test-connection")
    page.wait_for_selector(".test-result.ok")
    shot(page, "llm-modal")
    page.click("#save")
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("text=sk-…5678")
    assert "sk-test-byok-5678" not in page.content()
    page.click("#open-llm-config")
    assert "sk-…5678" in page.inner_text("#api-key-saved")
    shot(page, "llm-settings")


def test_the_dashboard_opens_the_same_configuration_modal(page):
    signup(page)
    assert "Not configured yet" in page.inner_text("#llm-summary")  # the free plan has no Platform AI
    page.click("#open-llm-config")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "anthropic:claude-haiku-4.5")
    page.fill("#api_key", "sk-ant-dash-4321")
    page.click("#save")
    page.wait_for_selector("#llm-summary >> text=sk-…4321")
    assert page.url.endswith("/dashboard/")
    summary = page.inner_text("#llm-summary")
    assert "Bring your own key" in summary
    assert "anthropic:claude-haiku-4.5" in summary
    assert Preferences.objects.unscoped().get(agent=None).model == "anthropic:claude-haiku-4.5"


def test_an_agent_gets_its_own_settings_through_the_same_modal(page):
    signup(page)
    page.click("nav >> text=Agents")
    page.fill("#id_slug", "support-bot")
    page.fill("#id_name", "Support bot")
    page.click("text=Create agent")
    page.wait_for_url("**/agents/support-bot/")
    page.click("text=Give this agent its own settings")
    page.wait_for_selector("#llm-modal[open]")
    assert "support-bot" in page.inner_text("#llm-modal-title")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "mistral:mistral-medium-3.1")
    page.fill("#api_key", "sk-mistral-agent-9876")
    page.click("#save")
    page.wait_for_selector("#llm-inheritance >> text=Overrides the workspace's LLM settings")
    assert page.url.endswith("/agents/support-bot/")  # saved from the agent's page, back on it
    assert not page.is_visible("#llm-modal")
    own = Preferences.objects.unscoped().get(agent__slug="support-bot")
    assert own.mode == "byok"
    assert own.model == "mistral:mistral-medium-3.1"
    assert not Preferences.objects.unscoped().filter(agent=None).exists(), (
        "the workspace's settings are untouched"
    )


def test_eu_checkbox_filters_models_and_custom_fields_follow_the_kind(page):
    signup(page)
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.check("input[name=mode][value=byok]")
    assert page.is_visible("#api_key"), "BYOK shows only its own fields"
    assert not page.is_visible("#ce_kind"), "BYOK shows only its own fields"
    page.wait_for_function("document.querySelectorAll('#model option').length > 5")
    all_models = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    page.check("#eu_only")
    eu_models = page.eval_on_selector_all("#model option", "os => os.map(o => o.value).filter(Boolean)")
    assert eu_models
    assert len(eu_models) < len(all_models)
    assert all(m.startswith(("mistral:", "cohere:")) for m in eu_models)
    page.check("input[name=mode][value=custom]")
    page.select_option("#ce_kind", "azure_openai")
    assert page.is_visible("#ce_deployment")
    assert page.is_visible("#ce_base_url")
    page.select_option("#ce_kind", "bedrock")
    assert page.is_visible("#ce_region")
    assert not page.is_visible("#ce_base_url")
    assert not page.is_visible("#discover")
    page.select_option("#ce_kind", "openai_compatible")
    assert page.is_visible("#discover")
    assert not page.is_visible("#ce_region")
    assert not page.is_visible("#api_key")
    assert not page.is_visible("#model")


def test_invalid_temperature_shows_the_error_and_saves_nothing(page):
    signup(page)
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.click("summary:has-text('Advanced')")
    page.fill("#temperature_num", "3")
    page.click("summary:has-text('Advanced')")  # closed again: the error must open it
    page.click("#save")
    page.wait_for_selector("[data-error=temperature] li", state="visible")
    assert "2" in page.inner_text("[data-error=temperature]")
    assert Preferences.objects.unscoped().count() == 0


def test_dashboard_shows_the_totals_of_real_calls_and_draws_the_chart(page, provider_env, gateway_url):
    """A key made on the keys page, three calls through the real gateway (uvicorn, the openai SDK), the dashboard."""
    import openai

    from billing.plans import assign_plan
    from llm.metering import queue as metering
    from tenants.models import Tenant

    signup(page)
    assign_plan(tenant=Tenant.objects.get(slug="acme"), plan_slug="enterprise")
    page.goto("/keys/")
    page.fill("#id_name", "backend")
    page.check("input[value=gateway]")
    page.click("text=Create key")
    key = page.inner_text("#new-key-value").strip()

    sdk = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)
    for _ in range(3):
        reply = sdk.chat.completions.create(
            model="openai:gpt-5-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.usage.prompt_tokens == 12
        assert reply.usage.completion_tokens == 5
    assert metering.pending_count() == 3, "the gateway queued one event per call"
    metering.flush()  # what the gateway's drain loop does every USAGE_DRAIN_INTERVAL (pages never drain)

    page.goto("/usage/?range=24h")
    cards = page.inner_text(".grid")
    assert "3" in page.inner_text(".card.stat >> nth=0")
    assert "36 / 15" in cards  # 3 × (12 in, 5 out)
    page.wait_for_function("document.getElementById('usage-chart').width > 0")
    assert "openai:gpt-5-mini" in page.inner_text("main")
    shot(page, "usage")


def test_tenant_b_never_sees_tenant_a(browser, live_server):
    pages = []
    for slug, email in (("alpha", "a@alpha.example.com"), ("beta", "b@beta.example.com")):
        context = browser.new_context(base_url=live_server.url)
        p = context.new_page()
        signup(p, email=email, slug=slug, name=slug.title())
        pages.append(p)
    alpha, beta = pages
    alpha.goto("/agents/")
    alpha.fill("#id_slug", "alpha-secret-agent")
    alpha.click("text=Create agent")
    alpha.goto("/keys/")
    alpha.fill("#id_name", "alpha-secret-key")
    alpha.click("text=Create key")
    for url in (
        "/dashboard/",
        "/agents/",
        "/keys/",
        "/members/",
        "/audit/",
        "/usage/",
        "/settings/llm/",
        "/billing/",
    ):
        beta.goto(url)
        body = beta.content()
        assert "alpha-secret" not in body, url
        assert "a@alpha.example.com" not in body, url
    response = beta.goto("/agents/alpha-secret-agent/")
    assert response.status == 404
    for p in pages:
        p.context.close()


def test_assistant_answers_from_the_fake_provider_and_explains_the_hard_cap(page, provider_env):
    from billing.caps import caps_update
    from billing.plans import assign_plan
    from tenants.audit import SYSTEM
    from tenants.models import Tenant

    signup(page)
    tenant = Tenant.objects.get(slug="acme")
    assign_plan(tenant=tenant, plan_slug="enterprise")
    page.goto("/assistant/")
    page.select_option("#new-model", "openai:gpt-5-mini")
    page.click("button:has-text('New chat')")
    page.wait_for_url("**/assistant/*/")
    page.fill("#content", "Hello there")
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-status=done]")
    reply = page.inner_text(".msg.assistant")
    assert "Hello from fake" in reply
    assert "12 in / 5 out · $0.000013" in reply
    shot(page, "assistant")
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=0, hard_tcu=0, confirm=True)
    page.fill("#content", "Again?")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.error")
    assert "hard cap" in page.inner_text(".msg.assistant.error").lower()


def test_max_tokens_has_a_number_box_and_an_untouched_value_saves_unchanged(page, provider_env):
    """The slider moves by 100; the exact value lives in the number box beside it, so saving without touching it
    keeps the saved value (it used to save 4096 as 4100 and audit it as changed)."""
    from tenants.models import AuditEvent

    signup(page)
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-test-byok-5678")
    page.click("#save")
    page.wait_for_selector("text=sk-…5678")
    saved = Preferences.objects.unscoped().get()
    first = saved.max_tokens
    assert first % 100 != 0, "the default is not on the slider's steps, so the test shows the snapping"

    page.click("#open-llm-config")
    page.click("summary:has-text('Advanced')")
    assert page.input_value("#max_tokens_num") == str(first)
    page.fill("#temperature_num", "0.3")  # change something else; leave max tokens alone
    page.click("#save")
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("[data-summary=params]:has-text('0.3')")
    saved.refresh_from_db()
    assert saved.max_tokens == first
    last = AuditEvent.objects.unscoped().filter(action__startswith="llm.preferences").order_by("-id").first()
    assert last is not None
    assert "max_tokens" not in (last.changes or {})

    page.click("#open-llm-config")
    page.click("summary:has-text('Advanced')")
    page.fill("#max_tokens_num", "3333")
    assert page.input_value("#max_tokens") == "3300"  # the slider follows, on its step
    page.click("#save")
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("[data-summary=params]:has-text('3333')")
    saved.refresh_from_db()
    assert saved.max_tokens == 3333


def test_errors_clear_when_their_field_or_the_mode_changes_under_one_summary(page, provider_env):
    signup(page)
    page.goto("/settings/llm/")
    page.click("#open-llm-config")
    page.check("input[name=mode][value=custom]")
    page.fill("#ce_base_url", "ftp://models.example.com")
    page.fill("#ce_model", "llama3:8b")
    page.click("summary:has-text('Advanced')")
    page.fill("#temperature_num", "3")
    page.click("#save")
    page.wait_for_selector("[data-error='custom_endpoint.base_url'] li", state="visible")
    assert page.is_visible("[data-error=temperature] li")
    summary = page.inner_text("#form-error")
    assert "Base URL" in summary
    assert "Temperature" in summary

    page.fill("#ce_base_url", "https://models.example.com/v1")  # corrected: its error goes at once
    assert page.inner_text("[data-error='custom_endpoint.base_url']") == ""
    assert "Base URL" not in page.inner_text("#form-error")
    assert "Temperature" in page.inner_text("#form-error")  # the other one stays until it is fixed
    page.fill("#temperature_num", "0.5")
    assert page.inner_text("[data-error=temperature]") == ""
    assert not page.is_visible("#form-error")

    page.fill("#temperature_num", "9")
    page.click("#save")
    page.wait_for_selector("[data-error=temperature] li", state="visible")
    page.check("input[name=mode][value=byok]")  # a new mode: the old form's errors go
    assert page.inner_text("[data-error=temperature]") == ""
    assert not page.is_visible("#form-error")
    assert Preferences.objects.unscoped().count() == 0
