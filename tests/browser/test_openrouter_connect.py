"""Connect OpenRouter in a real browser: the settings page → OpenRouter's consent page (a local fake of the OAuth
PKCE flow) → back on the settings page with the account's key saved, shown only masked."""

from __future__ import annotations

import pytest

from llm.calls.resolution import forget_env
from tests.browser.conftest import shot, signup
from tests.fakes.openrouter_oauth import FakeOpenRouter

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def openrouter(monkeypatch, settings):
    fake = FakeOpenRouter().start()
    settings.OPENROUTER_AUTH_URL = fake.auth_url
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake.api_base)
    forget_env()
    yield fake
    fake.stop()
    forget_env()


def test_connect_openrouter_round_trip_saves_the_key_masked(page, openrouter):
    from llm.config.credentials import secrets_of
    from llm.models import Credential

    signup(page)
    page.goto("/settings/llm/")
    assert page.locator("#openrouter-linked").count() == 0
    page.click("#connect-openrouter")
    page.wait_for_selector("#authorize")  # OpenRouter's own page
    assert page.url.startswith(openrouter.auth_url)
    page.click("#authorize")
    page.wait_for_selector("#openrouter-linked")
    assert "/settings/llm/" in page.url
    key = openrouter.issued[-1]
    credential = Credential.objects.unscoped().get(kind="openrouter")
    assert secrets_of(credential) == {"api_key": key}
    assert credential.api_key_masked in page.inner_text("#openrouter-linked")
    assert key not in page.content()
    assert page.inner_text("#connect-openrouter") == "Reconnect OpenRouter"
    shot(page, "openrouter-connected")
