"""After the schedule rolls a tenant's usage up, the reads its pages made in the last hour are folded again by the
task, so the next page view is not the one that pays for it (a few hundred ms at millions of events)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from llm.models import UsageEvent
from llm.tasks import rollup_usage
from llm.usage.selectors import usage_summary

pytestmark = pytest.mark.django_db(transaction=True)

_ids = count(1)


def _event(tenant, *, ago, agent=None) -> None:
    UsageEvent.objects.unscoped().create(
        tenant=tenant,
        agent=agent,
        request_id=f"warm{next(_ids)}",
        created_at=timezone.now() - ago,
        model="openai:gpt-5-mini",
        provider="openai",
        mode="byok",
        input_tokens=10,
        output_tokens=5,
        cost_usd=Decimal("0.00000125"),
        latency_ms=100,
    )


def _rollup_reads(fn) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        fn()
    return [
        q["sql"]
        for q in queries.captured_queries
        if "llm_usagehourly" in q["sql"] or "llm_usagedaily" in q["sql"]
    ]


def test_the_rollup_task_warms_what_the_tenant_read(tenant, other_tenant, agent):
    _event(tenant, ago=timedelta(hours=3))
    _event(tenant, ago=timedelta(hours=3), agent=agent)
    _event(other_tenant, ago=timedelta(hours=3))
    rollup_usage()
    assert usage_summary(tenant=tenant, range_name="30d")["totals"]["requests"] == 2
    assert usage_summary(tenant=tenant, range_name="all", agent=agent)["totals"]["requests"] == 1
    _event(tenant, ago=timedelta(hours=2))  # a new hour to roll up: a new watermark version
    _event(tenant, ago=timedelta(hours=2), agent=agent)
    rollup_usage()  # folds both reads again for the new version
    assert not _rollup_reads(lambda: usage_summary(tenant=tenant, range_name="30d"))
    assert not _rollup_reads(lambda: usage_summary(tenant=tenant, range_name="all", agent=agent))
    assert usage_summary(tenant=tenant, range_name="30d")["totals"]["requests"] == 4
    assert usage_summary(tenant=tenant, range_name="all", agent=agent)["totals"]["requests"] == 2
    # a shape nobody read is not warmed, and another tenant's reads are not this tenant's
    assert _rollup_reads(lambda: usage_summary(tenant=tenant, range_name="7d"))
    assert _rollup_reads(lambda: usage_summary(tenant=other_tenant, range_name="30d"))


def test_a_failed_warm_up_leaves_the_rollup_done(tenant, monkeypatch, caplog):
    from llm.usage import selectors

    _event(tenant, ago=timedelta(hours=3))
    usage_summary(tenant=tenant, range_name="30d")

    def broken(tenant_ids):
        raise RuntimeError("warm-up broke")

    monkeypatch.setattr(selectors, "warm_recent_reads", broken)
    assert rollup_usage() > 0
    assert "warming the usage reads after the rollup failed" in caplog.text
    assert usage_summary(tenant=tenant, range_name="30d")["totals"]["requests"] == 1
