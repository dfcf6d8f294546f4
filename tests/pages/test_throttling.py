"""Throttling (django-axes): log-in per account and per address, sign-up, password reset and invitation acceptance;
a throttled client gets a page that says when to retry."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from tenants.models import Tenant

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = __import__("datetime").timedelta(minutes=15)


def _login(client: Client, email: str, password: str, ip: str = "203.0.113.7"):
    return client.post("/login/", {"username": email, "password": password}, REMOTE_ADDR=ip)


def _assert_locked(response) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    assert "Try again in 15 minutes" in response.content.decode()


def test_after_repeated_wrong_passwords_the_right_one_is_refused_with_a_retry_time(make_user):
    make_user("bob@example.com", password=PASSWORD)
    client = Client()
    for _ in range(30):
        _login(client, "bob@example.com", "wrong-password")
    response = _login(client, "bob@example.com", PASSWORD)
    _assert_locked(response)
    assert "_auth_user_id" not in client.session


def test_the_account_is_throttled_from_any_address_and_in_any_letter_case(make_user):
    make_user("bob@example.com", password=PASSWORD)
    for n in range(5):
        _login(Client(), "Bob@Example.com " if n % 2 else "bob@example.com", "wrong", ip=f"198.51.100.{n}")
    _assert_locked(_login(Client(), "bob@example.com", PASSWORD, ip="192.0.2.200"))


def test_one_address_trying_many_accounts_is_throttled(make_user):
    make_user("zed@example.com", password=PASSWORD)
    for n in range(5):
        _login(Client(), f"user{n}@example.com", "wrong", ip="203.0.113.9")
    _assert_locked(_login(Client(), "zed@example.com", PASSWORD, ip="203.0.113.9"))
    ok = _login(Client(), "zed@example.com", PASSWORD, ip="203.0.113.10")  # another address, another account
    assert ok.status_code == 302


def test_a_few_mistakes_then_the_right_password_logs_in(make_user):
    make_user("amy@example.com", password=PASSWORD)
    client = Client()
    for _ in range(3):
        assert _login(client, "amy@example.com", "wrong").status_code == 200
    assert _login(client, "amy@example.com", PASSWORD).status_code == 302


def test_password_reset_mails_to_one_address_are_throttled(make_user):
    make_user("carol@example.com", password=PASSWORD)
    for n in range(5):
        Client().post("/password-reset/", {"email": "carol@example.com"}, REMOTE_ADDR=f"198.51.100.{n}")
    sent = len(mail.outbox)
    assert sent == 5
    response = Client().post("/password-reset/", {"email": "carol@example.com"}, REMOTE_ADDR="192.0.2.1")
    _assert_locked(response)
    assert len(mail.outbox) == sent


def test_sign_ups_from_one_address_are_throttled():
    for n in range(5):
        Client().post(
            "/signup/",
            {
                "email": f"new{n}@example.com",
                "password": PASSWORD,
                "tenant_name": f"T{n}",
                "tenant_slug": f"team-{n}",
            },
            REMOTE_ADDR="203.0.113.50",
        )
    response = Client().post(
        "/signup/",
        {"email": "last@example.com", "password": PASSWORD, "tenant_name": "L", "tenant_slug": "team-last"},
        REMOTE_ADDR="203.0.113.50",
    )
    _assert_locked(response)
    assert not Tenant.objects.filter(slug="team-last").exists()


def test_guessing_invitation_tokens_is_throttled():
    for n in range(5):
        assert Client().get(f"/invite/guess-{n}/", REMOTE_ADDR="203.0.113.77").status_code == 410
    _assert_locked(Client().get("/invite/guess-last/", REMOTE_ADDR="203.0.113.77"))
    _assert_locked(Client().post("/invite/guess-last/", {"password": PASSWORD}, REMOTE_ADDR="203.0.113.77"))
