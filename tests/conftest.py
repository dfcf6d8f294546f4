"""Shared fixtures: the real PostgreSQL and Redis (a clear failure when either is down), tenants, keys, clients."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tenants.audit import SYSTEM
from tenants.keys import apikey_create
from tenants.models import Tenant, User
from tenants.services import agent_create, tenant_create


def _service_up(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    from django.conf import settings

    missing = []
    db = settings.DATABASES["default"]
    if "postgresql" in db["ENGINE"] and not _service_up(
        f"//{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}", 5432
    ):
        missing.append(f"PostgreSQL at {db.get('HOST')}:{db.get('PORT') or 5432} (DATABASE_URL)")
    if settings.REDIS_URL and not _service_up(settings.REDIS_URL, 6379):
        missing.append(f"Redis at {settings.REDIS_URL} (REDIS_URL)")
    if missing:
        raise pytest.UsageError(
            "Tests need these services and they do not answer: "
            + "; ".join(missing)
            + ". Start them (see README) or point DATABASE_URL / REDIS_URL elsewhere."
        )


def seed_reference_data() -> None:
    """Plans, managed tiers, billing schedules and the model catalog, as the data migrations create them."""
    import importlib

    from django.apps import apps

    from llm.config.catalog import seed_catalog

    importlib.import_module("billing.migrations.0002_seed_plans").seed(apps, None)
    importlib.import_module("billing.migrations.0004_managed_tiers_seed").forward(apps, None)
    seed_catalog()


@pytest.fixture(autouse=True)
def _reseed_after_flush(request):
    """Transactional tests flush every table after each test; put the reference data back first."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
        seed_reference_data()


def clear_redis_namespace() -> None:
    """Forget this run's cache and Redis keys (all under its own prefix). Not `cache.clear()`: on Redis that is
    FLUSHDB, which would wipe the counters and queues of every other run sharing the server."""
    from django.conf import settings

    if not settings.REDIS_URL:
        cache.clear()
        return
    from llm.limits import budget

    client = budget.backend().sync_client()
    keys = list(client.scan_iter(f"{budget.NS}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


@pytest.fixture(autouse=True)
def _clean_cache():
    from llm.config import catalog

    # The catalog's per-process memo is keyed by the config version kept in Redis; clearing Redis restarts the
    # versions, so a memo left by a test that edited the catalog could answer for the same number in the next one.
    clear_redis_namespace()
    catalog.forget_memo()
    yield
    clear_redis_namespace()
    catalog.forget_memo()


@pytest.fixture
def make_user(db):
    counter = {"n": 0}

    def make(email: str | None = None, password: str = "correct-horse-battery-9") -> User:
        counter["n"] += 1
        return User.objects.create_user(email=email or f"user{counter['n']}@example.com", password=password)

    return make


@pytest.fixture
def make_tenant(db, make_user):
    def make(slug: str = "acme", owner: User | None = None, **kwargs) -> Tenant:
        owner = owner or make_user(f"owner@{slug}.example.com")
        return tenant_create(slug=slug, name=slug.title(), owner=owner, **kwargs)

    return make


@pytest.fixture
def tenant(make_tenant) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def other_tenant(make_tenant) -> Tenant:
    return make_tenant("globex")


@pytest.fixture
def make_key(db):
    def make(tenant: Tenant, scopes=("gateway", "manage"), agent=None, **kwargs) -> str:
        kwargs.setdefault("name", "test")
        _, raw = apikey_create(
            tenant=tenant, actor=SYSTEM, scopes=list(scopes), agent=agent, rename_if_taken=True, **kwargs
        )
        return raw

    return make


@pytest.fixture
def manage_client(tenant, make_key) -> APIClient:
    """API client authenticated with a `manage` key of `tenant`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(tenant)}")
    return client


@pytest.fixture
def other_client(other_tenant, make_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(other_tenant)}")
    return client


@pytest.fixture
def agent(tenant):
    return agent_create(tenant=tenant, actor=SYSTEM, slug="support-bot", name="Support bot")


@pytest.fixture(scope="session")
def fake_upstream():
    """One fake provider server (every wire protocol) for the whole run; see tests/fakes/upstream.py."""
    from tests.fakes.upstream import FakeUpstream

    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_upstream):
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture
def platform_allowed(monkeypatch):
    """The workspace's plan includes platform-managed models and the platform reaches the catalog through
    OpenRouter, so platform-mode routes and preferences save (a platform target no key reaches is refused at save,
    as the gateway would refuse it)."""
    import billing.plans
    from llm.calls.resolution import forget_env

    monkeypatch.setattr(billing.plans, "plan_allows_platform", lambda tenant: True)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-platform-openrouter-0000")
    forget_env()
