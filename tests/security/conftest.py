"""Fixtures of the security tests: fresh in-process memos, a second upstream that records what it receives, and
API clients for a tenant admin (browser session) and a `manage` key."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from llm import catalog, crypto, resolution, ssrf
from tenants.models import Membership


def _forget_everything() -> None:
    crypto._data_keys.clear()
    crypto._masters.clear()
    ssrf.clear_dns_cache()
    catalog.forget_memo()
    resolution.clear_route_cache()
    resolution.forget_env()


@pytest.fixture(autouse=True)
def _fresh_memos():
    _forget_everything()
    yield
    _forget_everything()


@pytest.fixture(scope="session")
def _elsewhere_server():
    from tests.fakes.upstream import FakeUpstream

    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def elsewhere(_elsewhere_server):
    """A second fake provider on another port (another origin); `.requests` holds (path, headers, body)."""
    _elsewhere_server.reset()
    return _elsewhere_server


@pytest.fixture
def admin_session(tenant, make_user) -> APIClient:
    """The browser session of a tenant admin (what the pages' scripts use)."""
    user = make_user("admin@acme.example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=user, role="admin")
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture(params=["admin_session", "manage_client"])
def api(request) -> APIClient:
    """Each test runs once as a tenant admin over the session and once with a `manage` key."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def production_ssrf(settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    return settings
