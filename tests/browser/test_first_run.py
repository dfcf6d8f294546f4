"""The first run, end to end, as a new user does it (#15 "Done when"): sign up → configure the LLM in the modal →
create a key → the first call through the real gateway with the openai SDK → the dashboard shows it. A
screenshot of each step, at desktop and phone width, is kept in test-artifacts/screenshots (CI artifacts)."""

from __future__ import annotations

import openai
import pytest

from tests.browser.conftest import ARTIFACTS, shot, signup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def openai_upstream(monkeypatch, fake):
    """Where the tenant's own OpenAI key calls: the fake OpenAI (the real client code in the path)."""
    from llm.calls import hot_cache
    from llm.calls.resolution import forget_env

    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    forget_env()
    hot_cache.clear()
    yield fake
    forget_env()


def test_first_run_sign_up_configure_key_first_call_dashboard(page, openai_upstream, gateway_url):
    from llm.metering import queue as metering

    # 1. Sign up: the dashboard says the LLM is not configured yet and how to do it.
    signup(page)
    assert "Not configured yet" in page.inner_text("#llm-summary")
    shot(page, "first-run-1-dashboard-new")

    # 2. Configure: the modal opens on a mode the workspace can use; the user's own OpenAI key, tested, saved.
    page.click("#llm-summary >> text=Configure the LLM")
    page.wait_for_selector("#llm-modal[open]")
    page.check("input[name=mode][value=byok]")
    page.select_option("#model", "openai:gpt-5-mini")
    page.fill("#api_key", "sk-test-first-run-4321")
    page.click("#test-connection")
    page.wait_for_selector(".test-result.ok")
    shot(page, "first-run-2-configure")
    page.click("#save")
    page.wait_for_selector("text=sk-…4321")
    assert "sk-test-first-run-4321" not in page.content()

    # 3. A key for the application: shown once, with a copy button.
    page.goto("/keys/")
    page.fill("#id_name", "backend")
    page.check("input[value=gateway]")
    page.click("text=Create key")
    page.wait_for_selector("#new-key-value")
    key = page.inner_text("#new-key-value").strip()
    assert key.startswith("byok-")
    shot(page, "first-run-3-key")

    # 4. The first call, as the application makes it: the openai SDK against the gateway, model "default".
    sdk = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)
    reply = sdk.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hello"}])
    assert reply.choices[0].message.content == "Hello from fake openai_compat!"
    _, headers, _ = openai_upstream.requests[-1]
    assert headers["authorization"] == "Bearer sk-test-first-run-4321"  # the tenant's own key reached OpenAI
    metering.flush()  # what the gateway's drain loop does every few seconds

    # 5. The dashboard shows the call: one request, its tokens, no error, configured.
    page.goto("/dashboard/")
    assert "Not configured yet" not in page.inner_text("main")
    stats = [page.inner_text(f".card.stat >> nth={i} >> .value").strip() for i in range(4)]
    assert stats[0] == "1"  # requests
    assert stats[1] == "12 / 5"  # tokens in / out, as the provider reported them
    assert stats[3] == "0 %"  # error rate
    shot(page, "first-run-4-dashboard-after-call")
    assert (ARTIFACTS / "first-run-4-dashboard-after-call-phone.png").exists()
