"""#15 point 24: the embedding model `default` calls is a setting in the LLM modal (not only in the API), offering
the embedding models the workspace can call; saved, it is what /v1/embeddings with model="default" uses."""

from __future__ import annotations

import openai
import pytest

from tests.browser.conftest import signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_embedding_model_is_chosen_in_the_modal_and_used_by_default(page, fake, monkeypatch, gateway_url):
    from llm.calls import hot_cache
    from llm.calls.resolution import forget_env
    from llm.models import Preferences
    from tenants.audit import SYSTEM
    from tenants.keys import apikey_create
    from tenants.models import Tenant

    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    forget_env()
    signup(page)
    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-test-embed-0001")
    page.click("details.advanced > summary")
    offered = page.eval_on_selector_all("#embedding_model option", "options => options.map(o => o.value)")
    assert "openai:text-embedding-3-small" in offered
    assert "openai:gpt-5-mini" not in offered  # chat models are not embedding models
    page.select_option("#embedding_model", "openai:text-embedding-3-small")
    with page.expect_navigation():  # saved, the settings page reloads
        page.click("#save")
    page.wait_for_selector("[data-summary=mode]:has-text('Bring your own key')")
    prefs = Preferences.objects.unscoped().get(agent=None)
    assert prefs.embedding_model == "openai:text-embedding-3-small"

    page.goto("/settings/llm/?configure")
    page.wait_for_selector("#llm-modal[open]")
    assert page.input_value("#embedding_model") == "openai:text-embedding-3-small"  # reopened: what is saved

    hot_cache.clear()
    _, key = apikey_create(
        tenant=Tenant.objects.get(slug="acme"), actor=SYSTEM, name="app", scopes=["gateway"]
    )
    sdk = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)
    assert len(sdk.embeddings.create(model="default", input=["a"]).data) == 1
    assert fake.requests[-1][2]["model"] == "text-embedding-3-small"
    forget_env()
