"""A cold start under load: concurrent first calls share one lookup per key (the API key, the route), so a burst is
one query and one pool thread per key, not one per call; a caller that hangs up does not cancel the others' lookup."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llm.calls import admission, hot_cache
from llm.gateway import app

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai:gpt-5-mini"
BURST = 16


@pytest.fixture
def platform_env(monkeypatch, fake):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")


def _counting(monkeypatch, module, name: str) -> list[int]:
    """Wrap module.name so each call is counted and takes 0.3 s: every call of the burst arrives while it runs."""
    real = getattr(module, name)
    calls: list[int] = []
    lock = threading.Lock()

    def counted(*args, **kwargs):
        with lock:
            calls.append(1)
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_burst_of_first_calls_looks_each_thing_up_once(
    gateway_url, tenant, make_key, platform_env, monkeypatch
):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    key = make_key(tenant, scopes=["gateway"])
    key_lookups = _counting(monkeypatch, app, "_lookup_key")
    route_lookups = _counting(monkeypatch, admission, "resolve_route")
    hot_cache.clear()

    def call(_: int) -> int:
        return httpx.post(
            gateway_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(BURST) as pool:
        statuses = list(pool.map(call, range(BURST)))
    assert statuses == [200] * BURST
    assert len(key_lookups) == 1
    assert len(route_lookups) == 1
    assert not admission._inflight, "nothing is left in flight"


def test_a_caller_that_hangs_up_does_not_cancel_the_shared_lookup():
    """The first caller of a burst goes away while the lookup runs; the others still get its answer."""
    import asyncio

    calls: list[int] = []

    def slow_load(value: int) -> int:
        calls.append(value)
        time.sleep(0.3)
        return value * 2

    cache = hot_cache.TTLCache(ttl=60)

    async def burst() -> list[int]:
        first = asyncio.ensure_future(admission._cached(cache, "k", slow_load, 21))
        await asyncio.sleep(0.05)
        others = [asyncio.ensure_future(admission._cached(cache, "k", slow_load, 21)) for _ in range(3)]
        first.cancel()
        results = await asyncio.gather(*others)
        assert first.cancelled()
        return results

    assert asyncio.run(burst()) == [42, 42, 42]
    assert calls == [21]
    assert cache.get("k") == 42
