"""The reservation mechanism: caps hold under concurrency, counters rebuild from PostgreSQL, limits refuse."""

import threading
from decimal import Decimal

import orjson
import pytest
from django.utils import timezone

from llm import budget
from llm.models import UsageEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_backend():
    budget.reset_backend()
    b = budget.backend()
    assert isinstance(b, budget.RedisBackend), "tests run against the real Redis"
    client = b.sync_client()
    for key in client.scan_iter(f"{budget.NS}:*"):
        client.delete(key)
    yield b
    budget.reset_backend()


def _tenant(make_tenant, slug="capped"):
    return make_tenant(slug)


def test_concurrent_calls_overshoot_a_cap_by_at_most_one_call(make_tenant):
    tenant = _tenant(make_tenant)
    cap, cost = 1000, 70
    scope = budget.Scope("tenant", tenant.id, cap)
    admitted = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def worker():
        from django.db import connection

        barrier.wait()
        for _ in range(10):
            adm = budget.reserve(scopes=[scope], amount=cost)
            if adm.reservation is None:
                break
            with lock:
                admitted.append(1)
            budget.settle(adm.reservation, actual=cost)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = budget.used_tcu(tenant_id=tenant.id)
    assert used == len(admitted) * cost
    assert used >= cap, "the cap must actually be reached in this test"
    assert used < cap + cost, f"overshoot beyond one call: used {used}, cap {cap}"


def test_refusal_names_the_cap_and_usage(make_tenant):
    tenant = _tenant(make_tenant)
    scope = budget.Scope("tenant", tenant.id, 100)
    adm = budget.reserve(scopes=[scope], amount=100)
    budget.settle(adm.reservation, actual=150)
    refused = budget.reserve(scopes=[scope], amount=1)
    assert refused.reservation is None
    assert refused.refusal.kind == "cap" and refused.refusal.used == 150 and refused.refusal.limit == 100


def test_raising_the_cap_admits_again_at_once(make_tenant):
    tenant = _tenant(make_tenant)
    adm = budget.reserve(scopes=[budget.Scope("tenant", tenant.id, 10)], amount=5)
    budget.settle(adm.reservation, actual=20)
    assert budget.reserve(scopes=[budget.Scope("tenant", tenant.id, 10)], amount=1).refusal is not None
    assert budget.reserve(scopes=[budget.Scope("tenant", tenant.id, 1000)], amount=1).reservation is not None


def test_missing_counter_is_rebuilt_from_postgresql(make_tenant, fresh_backend):
    tenant = _tenant(make_tenant)
    UsageEvent.objects.unscoped().create(tenant=tenant, request_id="r1", tcu=400, cost_usd=Decimal("0.004"))
    UsageEvent.objects.unscoped().create(tenant=tenant, request_id="r2", tcu=600, cost_usd=Decimal("0.006"))
    UsageEvent.objects.unscoped().create(tenant=tenant, request_id="old", tcu=9999,
                                         created_at=timezone.now().replace(year=2020))
    assert budget.used_tcu(tenant_id=tenant.id) == 1000
    refused = budget.reserve(scopes=[budget.Scope("tenant", tenant.id, 1000)], amount=1)
    assert refused.refusal is not None and refused.refusal.used == 1000


def test_rate_limit_refuses_with_retry_after(make_tenant):
    tenant = _tenant(make_tenant)
    rate = budget.RateLimit("tenant", tenant.id, 3, 60)
    for _ in range(3):
        adm = budget.reserve(scopes=[], rates=[rate], amount=0)
        assert adm.reservation is not None
        budget.settle(adm.reservation, actual=0)
    refused = budget.reserve(scopes=[], rates=[rate], amount=0)
    assert refused.refusal.kind == "rate"
    assert 1 <= refused.refusal.retry_after <= 60


def test_concurrency_limit_counts_calls_in_flight(make_tenant):
    tenant = _tenant(make_tenant)
    cc = (f"{budget.NS}:cc:{tenant.id}", 2)
    first = budget.reserve(scopes=[], concurrency=cc, amount=0)
    second = budget.reserve(scopes=[], concurrency=cc, amount=0)
    assert budget.reserve(scopes=[], concurrency=cc, amount=0).refusal.kind == "concurrency"
    budget.settle(first.reservation, actual=0)
    assert budget.reserve(scopes=[], concurrency=cc, amount=0).reservation is not None
    budget.settle(second.reservation, actual=0)


def test_settle_queues_the_event_in_the_same_step(make_tenant, fresh_backend):
    tenant = _tenant(make_tenant)
    adm = budget.reserve(scopes=[budget.Scope("tenant", tenant.id, None)], amount=10)
    budget.settle(adm.reservation, actual=7, event=b'{"x": 1}')
    budget.settle(adm.reservation, actual=7, event=b'{"x": 1}')  # settling twice is a no-op
    client = fresh_backend.sync_client()
    assert client.lrange(budget.EVENTS_KEY, 0, -1) == [b'{"x": 1}']
    assert budget.used_tcu(tenant_id=tenant.id) == 7


def _queue_usage(client, tenant, request_id: str) -> None:
    from llm.metering import Usage

    usage = Usage(request_id=request_id, tenant_id=tenant.id, user_id=None, request_type="chat",
                  provider="openai", model="openai:gpt-5-mini", mode="platform", latency_ms=5,
                  input_tokens=3, output_tokens=4, status="ok", http_status=200)
    client.rpush(budget.EVENTS_KEY, usage.to_json())


def test_a_drainer_that_died_holding_the_lease_delays_the_next_but_loses_nothing(
        make_tenant, fresh_backend, monkeypatch):
    from llm import metering

    tenant = _tenant(make_tenant)
    client = fresh_backend.sync_client()
    _queue_usage(client, tenant, "req-after-crash")
    monkeypatch.setattr(metering, "_DRAIN_LEASE_S", 1)
    client.set(metering._DRAIN_LOCK, "a-killed-drainer", ex=1)  # what a SIGKILLed drainer leaves behind
    assert metering.drain() == 0, "the lease is honoured while it lasts"
    assert metering.flush() == 1, "flush waits the lease out, then drains"
    assert list(UsageEvent.objects.unscoped().values_list("request_id", flat=True)) == ["req-after-crash"]


def test_a_drainer_releases_only_its_own_lease(make_tenant, fresh_backend):
    from llm import metering

    client = fresh_backend.sync_client()
    client.set(metering._DRAIN_LOCK, "someone-else", ex=30)
    assert client.eval(metering._RELEASE, 1, metering._DRAIN_LOCK, "mine") == 0
    assert client.get(metering._DRAIN_LOCK) == b"someone-else"
    assert metering.drain() == 0
    assert client.get(metering._DRAIN_LOCK) == b"someone-else", "a refused drainer leaves the holder's lease alone"


def test_an_event_of_a_deleted_agent_or_tenant_does_not_hold_the_queue_back(make_tenant, fresh_backend):
    from llm import metering
    from tenants.models import Agent

    tenant, gone = _tenant(make_tenant), _tenant(make_tenant, slug="deleted-later")
    agent = Agent.objects.unscoped().create(tenant=tenant, name="Short-lived")
    client = fresh_backend.sync_client()
    _queue_usage(client, gone, "req-of-a-deleted-tenant")
    _queue_usage(client, tenant, "req-before")
    raw = orjson.loads(client.lrange(budget.EVENTS_KEY, -1, -1)[0])
    client.rpush(budget.EVENTS_KEY, orjson.dumps({**raw, "request_id": "req-of-a-deleted-agent",
                                                  "agent_id": agent.id}))
    agent.delete()
    gone.delete()

    assert metering.drain() == 3
    rows = dict(UsageEvent.objects.unscoped().values_list("request_id", "agent_id"))
    assert rows == {"req-before": None, "req-of-a-deleted-agent": None}
    assert metering.pending_count() == 0
