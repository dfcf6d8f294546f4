"""The reservation mechanism: caps hold under concurrency, counters rebuild from PostgreSQL, limits refuse."""

import threading
from decimal import Decimal

import orjson
import pytest
from django.utils import timezone

from llm.limits import budget
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
    assert refused.refusal.kind == "cap"
    assert refused.refusal.used == 150
    assert refused.refusal.limit == 100


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
    UsageEvent.objects.unscoped().create(
        tenant=tenant, request_id="old", tcu=9999, created_at=timezone.now().replace(year=2020)
    )
    assert budget.used_tcu(tenant_id=tenant.id) == 1000
    refused = budget.reserve(scopes=[budget.Scope("tenant", tenant.id, 1000)], amount=1)
    assert refused.refusal is not None
    assert refused.refusal.used == 1000


def test_the_guardrail_counts_only_what_a_platform_target_served(make_tenant):
    """A call that may reach a platform target reserves on the guardrail; a BYOK fallback that served it is
    settled into the tenant's counter only."""
    tenant = _tenant(make_tenant)
    scopes = [budget.Scope("tenant", tenant.id, None), budget.Scope("platform", tenant.id, 1000)]
    served_by_byok = budget.reserve(scopes=scopes, amount=50)
    budget.settle(served_by_byok.reservation, actual=40, mode="byok")
    served_by_platform = budget.reserve(scopes=scopes, amount=50)
    budget.settle(served_by_platform.reservation, actual=7, mode="platform")
    assert budget.used_tcu(tenant_id=tenant.id) == 47
    assert budget.platform_used_tcu(tenant_id=tenant.id) == 7


def test_missing_guardrail_counter_is_rebuilt_from_platform_rows_only(make_tenant, fresh_backend):
    tenant = _tenant(make_tenant)
    for request_id, mode, tcu in (("p1", "platform", 400), ("b1", "byok", 9000), ("c1", "custom", 50)):
        UsageEvent.objects.unscoped().create(
            tenant=tenant, request_id=request_id, mode=mode, tcu=tcu, cost_usd=Decimal("0.01")
        )
    assert budget.platform_used_tcu(tenant_id=tenant.id) == 400
    assert budget.used_tcu(tenant_id=tenant.id) == 9450
    refused = budget.reserve(scopes=[budget.Scope("platform", tenant.id, 400)], amount=1)
    assert (refused.refusal.kind, refused.refusal.used) == ("cap", 400)


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


def _queued(client) -> list[bytes]:
    return [fields[b"e"] for _, fields in client.xrange(budget.EVENTS_KEY)]


def test_settle_queues_the_event_in_the_same_step(make_tenant, fresh_backend):
    tenant = _tenant(make_tenant)
    adm = budget.reserve(scopes=[budget.Scope("tenant", tenant.id, None)], amount=10)
    budget.settle(adm.reservation, actual=7, event=b'{"x": 1}')
    budget.settle(adm.reservation, actual=7, event=b'{"x": 1}')  # settling twice is a no-op
    client = fresh_backend.sync_client()
    assert _queued(client) == [b'{"x": 1}']
    assert budget.used_tcu(tenant_id=tenant.id) == 7


def _usage(tenant, request_id: str, **fields):
    from llm.metering.pricing import Usage

    return Usage(
        request_id=request_id,
        tenant_id=tenant.id,
        user_id=None,
        request_type="chat",
        provider="openai",
        model="openai:gpt-5-mini",
        mode="platform",
        latency_ms=5,
        input_tokens=3,
        output_tokens=4,
        status="ok",
        http_status=200,
        **fields,
    )


def _queue_raw(client, raw: bytes) -> None:
    client.xadd(budget.EVENTS_KEY, {"e": raw})


def _queue_usage(client, tenant, request_id: str) -> None:
    _queue_raw(client, _usage(tenant, request_id).to_json())


def _rows() -> list[str]:
    return sorted(UsageEvent.objects.unscoped().values_list("request_id", flat=True))


def test_an_event_of_a_deleted_agent_or_tenant_does_not_hold_the_queue_back(make_tenant, fresh_backend):
    from llm.metering import queue as metering
    from tenants.models import Agent

    tenant, gone = _tenant(make_tenant), _tenant(make_tenant, slug="deleted-later")
    agent = Agent.objects.unscoped().create(tenant=tenant, name="Short-lived")
    client = fresh_backend.sync_client()
    _queue_usage(client, gone, "req-of-a-deleted-tenant")
    _queue_usage(client, tenant, "req-before")
    raw = orjson.loads(_queued(client)[-1])
    _queue_raw(client, orjson.dumps({**raw, "request_id": "req-of-a-deleted-agent", "agent_id": agent.id}))
    agent.delete()
    gone.delete()

    assert metering.drain() == 3
    rows = dict(UsageEvent.objects.unscoped().values_list("request_id", "agent_id"))
    assert rows == {"req-before": None, "req-of-a-deleted-agent": None}
    assert metering.pending_count() == 0


def test_a_poisoned_event_is_dead_lettered_and_every_good_one_lands(make_tenant, fresh_backend):
    """Events the database refuses (built by hand here, as an older version or a bug could queue them) go aside
    with their reason; the ones around them land, and the queue is empty afterwards."""
    from llm.metering import queue as metering

    tenant = _tenant(make_tenant)
    client = fresh_backend.sync_client()
    good = orjson.loads(_usage(tenant, "req-good-1").to_json())
    _queue_usage(client, tenant, "req-good-0")
    _queue_raw(client, b"{not json")
    _queue_raw(
        client, orjson.dumps({**good, "request_id": "req-dup-model", "model": "m" * 300})
    )  # cut, lands
    _queue_raw(client, orjson.dumps({"request_id": "req-no-tenant"}))
    _queue_raw(client, orjson.dumps({**good, "request_id": "req-bad-date", "created_at": "yesterday"}))
    _queue_usage(client, tenant, "req-good-1")

    assert metering.drain() == 6
    assert _rows() == ["req-dup-model", "req-good-0", "req-good-1"]
    assert metering.pending_count() == 0
    dead = metering.dead_letters()
    assert len(dead) == 3
    assert metering.dead_letter_count() == 3
    assert all(d["reason"] for d in dead)
    assert metering.drain() == 0, "nothing is retried forever"


def test_a_row_the_database_refuses_is_dead_lettered_not_retried(make_tenant, fresh_backend, monkeypatch):
    """The database itself refuses one row of the batch (a constraint we did not foresee): that row goes aside,
    the batch's other rows land."""
    from django.db import connection

    from llm.metering import queue as metering

    tenant = _tenant(make_tenant)
    client = fresh_backend.sync_client()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE llm_usageevent ADD CONSTRAINT no_teapots CHECK (http_status <> 418)")
    try:
        _queue_usage(client, tenant, "req-a")
        _queue_raw(
            client, orjson.dumps({**orjson.loads(_usage(tenant, "req-teapot").to_json()), "http_status": 418})
        )
        _queue_usage(client, tenant, "req-b")
        assert metering.drain() == 3
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE llm_usageevent DROP CONSTRAINT no_teapots")
    assert _rows() == ["req-a", "req-b"]
    (dead,) = metering.dead_letters()
    assert "no_teapots" in dead["reason"]
    assert metering.requeue_dead_letters() == 1
    assert metering.drain() == 1
    assert _rows() == ["req-a", "req-b", "req-teapot"]


def test_out_of_range_fields_are_bounded_before_they_are_queued(make_tenant, fresh_backend):
    from llm.metering import queue as metering

    tenant = _tenant(make_tenant)
    usage = _usage(tenant, "req-wild", cached_tokens=-1)
    usage.model = "custom:" + "x" * 400
    usage.input_tokens = 2**80
    usage.latency_ms = -5
    usage.cost_usd = "1e30"
    budget.settle(budget.reserve(scopes=[], amount=0).reservation, actual=0, event=usage.to_json())
    assert metering.drain() == 1
    row = UsageEvent.objects.unscoped().get()
    assert len(row.model) == 200
    assert row.input_tokens == 2**31 - 1
    assert row.cached_tokens == 0
    assert row.latency_ms == 0
    assert row.cost_usd < 10**8
    assert metering.dead_letter_count() == 0


def test_two_drainers_with_a_lease_shorter_than_a_batch_lose_and_double_nothing(
    make_tenant, fresh_backend, settings, monkeypatch
):
    """Drainer A reads a batch and stalls past the claim time; B takes the batch over and inserts it; A then
    finishes. Every event lands exactly once, including those queued meanwhile."""
    import threading

    from llm.metering import queue as metering

    settings.USAGE_CLAIM_IDLE_MS = 50
    tenant = _tenant(make_tenant)
    client = fresh_backend.sync_client()
    for i in range(40):
        _queue_usage(client, tenant, f"req-{i:03d}")
    monkeypatch.setattr(metering, "_DRAIN_BATCH", 10)
    a_read, b_done = threading.Event(), threading.Event()
    real_insert = metering._insert

    def slow_insert(rows):
        if threading.current_thread().name == "drainer-a" and not a_read.is_set():
            a_read.set()
            assert b_done.wait(20), "drainer B never finished"
        return real_insert(rows)

    monkeypatch.setattr(metering, "_insert", slow_insert)
    monkeypatch.setattr(metering, "_consumer", lambda: threading.current_thread().name)

    def run_a():
        from django.db import connection

        try:
            metering.drain()
        finally:
            connection.close()

    a = threading.Thread(target=run_a, name="drainer-a")
    a.start()
    assert a_read.wait(20)
    for i in range(40, 45):
        _queue_usage(client, tenant, f"req-{i:03d}")
    import time

    time.sleep(0.1)  # A's batch is now older than the claim time
    threading.current_thread().name, old_name = "drainer-b", threading.current_thread().name
    try:
        metering.drain()
    finally:
        threading.current_thread().name = old_name
    b_done.set()
    a.join(20)
    assert not a.is_alive()
    metering.drain()
    assert _rows() == [f"req-{i:03d}" for i in range(45)]
    assert metering.pending_count() == 0


def test_events_queued_by_an_earlier_version_are_moved_and_drained(make_tenant, fresh_backend):
    from llm.metering import queue as metering

    tenant = _tenant(make_tenant)
    client = fresh_backend.sync_client()
    client.rpush(budget.LEGACY_EVENTS_KEY, _usage(tenant, "req-old-list").to_json())
    assert metering.pending_count() == 1
    assert metering.drain() == 1
    assert _rows() == ["req-old-list"]
    assert metering.pending_count() == 0


def test_dead_letters_are_listed_in_admin_and_can_be_requeued(
    make_tenant, fresh_backend, admin_client, client
):
    from llm.metering import queue as metering

    tenant = _tenant(make_tenant)
    fresh_backend_client = fresh_backend.sync_client()
    _queue_raw(
        fresh_backend_client,
        orjson.dumps({**orjson.loads(_usage(tenant, "req-late").to_json()), "created_at": "not a date"}),
    )
    metering.drain()
    page = admin_client.get("/admin/llm/usage-dead-letters/")
    assert page.status_code == 200
    assert b"undecodable event" in page.content
    assert client.get("/admin/llm/usage-dead-letters/").status_code == 302, "admins only"
    (letter,) = metering.dead_letters()
    assert (
        admin_client.post(
            "/admin/llm/usage-dead-letters/", {"action": "discard", "ids": [letter["id"]]}
        ).status_code
        == 302
    )
    assert metering.dead_letter_count() == 0


def test_metrics_count_queued_and_dead_lettered_events(make_tenant, fresh_backend, client):
    from llm.metering import queue as metering

    tenant = _tenant(make_tenant)
    _queue_raw(fresh_backend.sync_client(), b"{broken")
    _queue_usage(fresh_backend.sync_client(), tenant, "req-waiting")
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "byok_usage_events_pending 2.0" in body
    metering.drain()
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "byok_usage_events_dead_lettered 1.0" in body
    assert "byok_usage_events_pending 0.0" in body
