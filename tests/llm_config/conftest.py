"""Fixtures of the LLM configuration tests: a distinctive secret, an admin client, a controllable resolver."""

from __future__ import annotations

import pytest

from llm.calls import resolution
from llm.config import catalog, encryption, ssrf

SECRET = "sk-test-PLAINTEXT-never-shown-9f8e7d6c5b4a3456"


def _forget_everything() -> None:
    # The database rolls back after each test but in-process memos would not: drop them too.
    encryption._data_keys.clear()
    encryption._masters.clear()
    ssrf.clear_dns_cache()
    catalog.forget_memo()
    resolution.clear_route_cache()
    resolution.forget_env()


@pytest.fixture(autouse=True)
def _fresh_memos():
    _forget_everything()
    yield
    _forget_everything()


@pytest.fixture
def production_ssrf(settings):
    """ALLOW_PRIVATE_ENDPOINTS off, as in production."""
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    return settings


@pytest.fixture
def dns(monkeypatch):
    """Make hostnames resolve to chosen addresses: dns["api.example.com"] = ["10.0.0.5"]."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        raise OSError("no such host")

    monkeypatch.setattr(ssrf, "_resolve", resolve)
    return table


@pytest.fixture
def admin_client(client, make_user):
    from tenants.models import User

    User.objects.create_superuser(email="root@example.com", password="correct-horse-battery-9")
    client.login(email="root@example.com", password="correct-horse-battery-9")
    return client
