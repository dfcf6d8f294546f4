"""Connect OpenRouter (OAuth PKCE) against a local fake of OpenRouter's flow: the key it issues is stored like any
BYOK key, and the gateway calls OpenRouter with it."""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client

from llm.calls.resolution import forget_env
from llm.config.credentials import secrets_of
from llm.config.openrouter_oauth import challenge_of
from llm.connect_pages import SESSION_KEY
from llm.models import Credential
from tenants.models import AuditEvent, Membership
from tests.fakes.openrouter_oauth import FakeOpenRouter

CONNECT = "/settings/llm/openrouter/connect"
CALLBACK = "/settings/llm/openrouter/callback"


@pytest.fixture
def openrouter(monkeypatch, settings):
    fake = FakeOpenRouter().start()
    settings.OPENROUTER_AUTH_URL = fake.auth_url
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake.api_base)
    forget_env()
    yield fake
    fake.stop()
    forget_env()


def _person(tenant, role: str = "owner") -> Client:
    client = Client()
    client.force_login(Membership.objects.unscoped().filter(tenant=tenant, role=role).first().user)
    return client


def _consent(client: Client) -> str:
    """Start the link and follow OpenRouter's consent page to the callback it sends the person back to."""
    started = client.post(CONNECT)
    assert started.status_code == 302
    consent = httpx.get(started["Location"])
    assert consent.status_code == 200, consent.text
    href = html.unescape(re.search(r'id="authorize" href="([^"]+)"', consent.text).group(1))
    back = urlsplit(href)
    assert back.path == CALLBACK
    return f"{back.path}?{back.query}"


def _messages(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


def test_connect_sends_the_person_to_openrouter_with_an_s256_challenge(transactional_db, tenant, openrouter):
    client = _person(tenant)
    started = client.post(CONNECT)
    target = urlsplit(started["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == openrouter.auth_url
    assert query["code_challenge_method"] == ["S256"]
    assert query["callback_url"] == [f"http://testserver{CALLBACK}"]
    verifier = client.session[SESSION_KEY]["verifier"]
    assert len(verifier) >= 43
    assert query["code_challenge"] == [challenge_of(verifier)]
    assert verifier not in started["Location"]


def test_linked_key_is_stored_like_a_pasted_one_and_the_gateway_calls_with_it(
    tenant, openrouter, manage_client, make_key, gw, caplog
):
    caplog.set_level(logging.DEBUG)
    client = _person(tenant)
    done = client.get(_consent(client), follow=True)
    assert done.redirect_chain[-1][0] == "/settings/llm/"
    key = openrouter.issued[-1]
    credential = Credential.objects.for_tenant(tenant).get(kind="openrouter")
    assert secrets_of(credential) == {"api_key": key}
    assert key not in credential.secrets_ciphertext
    page = done.content.decode()
    assert key not in page
    assert "OpenRouter connected" in page
    assert credential.api_key_masked in page
    assert 'id="openrouter-linked"' in page
    event = AuditEvent.objects.for_tenant(tenant).get(action="llm.credential.create")
    assert key not in str(event.changes)
    # The linked key is a BYOK key like any other: choose an OpenRouter model, call it, OpenRouter sees the key.
    saved = manage_client.post(
        "/api/llm/preferences",
        {"mode": "byok", "model": "openrouter:meta-llama/llama-3.1-70b-instruct"},
        format="json",
    )
    assert saved.status_code == 200, saved.json()
    gateway_key = make_key(tenant, scopes=("gateway",))
    answer = gw.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway_key}"},
        json={"model": "default", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status_code == 200, answer.text
    path, headers, body = openrouter.requests[-1]
    assert path == "/api/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {key}"
    assert body["model"] == "meta-llama/llama-3.1-70b-instruct"
    assert key not in caplog.text


def test_linking_again_rotates_the_key_of_the_same_credential(transactional_db, tenant, openrouter):
    client = _person(tenant)
    client.get(_consent(client))
    first = Credential.objects.for_tenant(tenant).get(kind="openrouter")
    client.get(_consent(client))
    second = Credential.objects.for_tenant(tenant).get(kind="openrouter")
    assert second.pk == first.pk
    assert secrets_of(second) == {"api_key": openrouter.issued[-1]} != {"api_key": openrouter.issued[0]}
    assert second.rotated_at is not None


def test_a_code_is_good_once_and_only_with_this_sessions_verifier(transactional_db, tenant, openrouter):
    client = _person(tenant)
    callback = _consent(client)
    # Another browser (no pending link) presenting the code: refused, nothing stored.
    stranger = _person(tenant, "owner")
    refused = stranger.get(callback, follow=True)
    assert "No OpenRouter connection was started" in _messages(refused)
    assert not Credential.objects.for_tenant(tenant).filter(kind="openrouter").exists()
    # A verifier that is not the one the challenge was made from: OpenRouter refuses it.
    session = client.session
    session[SESSION_KEY] = {**session[SESSION_KEY], "verifier": "x" * 43}
    session.save()
    wrong = client.get(callback, follow=True)
    assert "did not accept the sign-in" in _messages(wrong)
    assert not Credential.objects.for_tenant(tenant).filter(kind="openrouter").exists()
    # The pending link was used up by that attempt: replaying the callback changes nothing either.
    replay = client.get(callback, follow=True)
    assert "No OpenRouter connection was started" in _messages(replay)
    assert openrouter.issued == []


def test_a_link_started_in_another_workspace_does_not_land_here(
    transactional_db, tenant, other_tenant, openrouter
):
    client = _person(tenant)
    callback = _consent(client)
    session = client.session
    session[SESSION_KEY] = {**session[SESSION_KEY], "tenant": other_tenant.id}
    session.save()
    answer = client.get(callback, follow=True)
    assert "No OpenRouter connection was started" in _messages(answer)
    assert not Credential.objects.unscoped().filter(kind="openrouter").exists()


def test_declined_consent_and_an_unreachable_openrouter_say_so_and_change_nothing(
    transactional_db, tenant, openrouter, monkeypatch
):
    client = _person(tenant)
    client.post(CONNECT)
    declined = client.get(CALLBACK, follow=True)
    assert "did not send a sign-in code" in _messages(declined)
    callback = _consent(client)
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    down = client.get(callback, follow=True)
    assert "could not be reached" in _messages(down)
    assert not Credential.objects.for_tenant(tenant).filter(kind="openrouter").exists()


def test_only_owners_and_admins_link_and_only_by_post(transactional_db, tenant, make_user, openrouter):
    member = make_user("member@example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=member, role="member")
    client = Client()
    client.force_login(member)
    assert client.post(CONNECT).status_code == 403
    assert _person(tenant).get(CONNECT).status_code == 405
