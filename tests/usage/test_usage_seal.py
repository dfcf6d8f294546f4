"""A usage read folds the events past the watermark once, up to a sealed id, and adds only what came after: the
figures stay exact as events arrive, with a backlog the schedule has not rolled up, and when an insert commits
after a later one's (PostgreSQL hands ids out at insert, not at commit). Transactional: a seal is never taken
inside a transaction, so these tests commit like the gateway does."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from llm.models import UsageEvent
from llm.usage import selectors
from llm.usage.rollups import rollup_pending, seal_event_id
from llm.usage.selectors import usage_summary

pytestmark = pytest.mark.django_db(transaction=True)

_ids = count(1)


def _event(tenant, *, ago=timedelta(minutes=5), **fields) -> UsageEvent:
    values = {"model": "openai:gpt-5-mini", "provider": "openai", "mode": "byok", "latency_ms": 100} | fields
    return UsageEvent.objects.unscoped().create(
        tenant=tenant,
        request_id=f"seal{next(_ids)}",
        created_at=timezone.now() - ago,
        input_tokens=10,
        output_tokens=5,
        cost_usd=Decimal("0.00000125"),
        **values,
    )


@pytest.fixture
def seal_every_read(monkeypatch):
    monkeypatch.setattr(selectors, "_SEAL_AFTER", 0)


def _requests(tenant, range_name="all") -> int:
    return usage_summary(tenant=tenant, range_name=range_name)["totals"]["requests"]


def test_reads_stay_exact_as_events_arrive_after_the_seal(tenant, seal_every_read):
    for ago in (timedelta(days=3), timedelta(hours=5), timedelta(minutes=1)):
        _event(tenant, ago=ago)
    rollup_pending()
    _event(tenant, ago=timedelta(days=2))  # a late drain: an old hour past the watermark
    _event(tenant, ago=timedelta(minutes=2))
    assert _requests(tenant) == 5
    assert _requests(tenant, "24h") == 3
    _event(tenant, ago=timedelta(days=2, hours=1))
    _event(tenant, ago=timedelta(seconds=5))
    assert _requests(tenant) == 7  # sealed up to the 5th; the two after it are read live
    assert _requests(tenant, "24h") == 4
    body = usage_summary(tenant=tenant, range_name="24h")
    assert sum(h["requests"] for h in body["by_hour"]) == 4
    assert body["totals"]["cost_usd"] == pytest.approx(4 * 0.00000125)
    rollup_pending()
    assert _requests(tenant) == 7
    assert _requests(tenant, "24h") == 4


def test_a_sealed_read_sums_only_the_events_after_the_seal(tenant, seal_every_read):
    for _ in range(3):
        _event(tenant, ago=timedelta(minutes=3))
    assert _requests(tenant) == 3  # folds the three, seals at the last
    sealed = UsageEvent.objects.unscoped().order_by("-id").values_list("id", flat=True).first()
    with CaptureQueriesContext(connection) as queries:
        assert _requests(tenant) == 3
    sums = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "llm_usageevent"' in q["sql"] and "SUM(" in q["sql"]
    ]
    assert sums
    assert all(f'"llm_usageevent"."id" > {sealed}' in sql for sql in sums), sums


def test_an_insert_that_commits_after_a_later_one_is_not_lost(tenant, seal_every_read):
    """The writer holds id N in an open transaction while id N+1 commits: a read then must not seal past N."""
    _event(tenant)
    inserted, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                _event(tenant, model="openai:gpt-5")
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()
            done.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert inserted.wait(10)
    _event(tenant)  # a higher id, committed first
    assert seal_event_id() is None  # the open insert holds the seal off
    assert _requests(tenant) == 2  # the two committed events, read live
    release.set()
    assert done.wait(10)
    writer.join()
    assert (
        seal_event_id() == UsageEvent.objects.unscoped().order_by("-id").values_list("id", flat=True).first()
    )
    body = usage_summary(tenant=tenant, range_name="all")
    assert body["totals"]["requests"] == 3
    assert {m["model"] for m in body["by_model"]} == {"openai:gpt-5-mini", "openai:gpt-5"}


def test_no_seal_inside_a_transaction(tenant):
    _event(tenant)
    with transaction.atomic():
        assert seal_event_id() is None
    assert seal_event_id() == UsageEvent.objects.unscoped().values_list("id", flat=True).get()


def test_a_run_that_only_moves_an_idle_tenants_mark_keeps_the_reads_folded(tenant, other_tenant):
    _event(tenant, ago=timedelta(hours=3))
    rollup_pending()
    assert _requests(tenant) == 1  # folds the rollups
    _event(other_tenant, ago=timedelta(hours=2))  # another tenant's late event: this one is idle
    rollup_pending()
    with CaptureQueriesContext(connection) as queries:
        assert _requests(tenant) == 1
    assert not [
        q for q in queries.captured_queries if "llm_usagehourly" in q["sql"] or "llm_usagedaily" in q["sql"]
    ]
    _event(
        tenant, ago=timedelta(hours=2)
    )  # now it has an hour to roll up: its figures change, and are read anew
    rollup_pending()
    with CaptureQueriesContext(connection) as queries:
        assert _requests(tenant) == 2
    assert [q for q in queries.captured_queries if "llm_usagehourly" in q["sql"]]
