"""`GET /api/llm/usage` stays fast and exact with a rollup backlog (PostgreSQL, rows made by one INSERT … SELECT
generate_series through `generate_usage`). The issue's size (5,000,000 rolled up + 300,000 not) is measured by hand
(README, "Usage figures"); this is the CI-affordable tenth of it, against the same 150 ms bound."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command
from django.db import connection

from llm.models import UsageEvent
from llm.usage.selectors import usage_summary
from tests.conftest import clear_redis_namespace

# Transactional: the read seals the events it folded, which it never does inside a transaction.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_all_time_totals_are_exact_and_fast_with_a_day_not_rolled_up(tenant, capsys):
    assert connection.vendor == "postgresql"
    call_command("generate_usage", tenant.slug, events=200_000, days=30, agents=3)
    call_command("generate_usage", tenant.slug, events=30_000, days=1, agents=3, no_rollup=True)
    capsys.readouterr()
    want = UsageEvent.objects.for_tenant(tenant).count()
    assert want == 230_000
    clear_redis_namespace()  # nothing folded yet: the first read sums the rollups and the backlog
    took = []
    for _ in range(6):
        started = time.perf_counter()
        body = usage_summary(tenant=tenant, range_name="all")
        took.append(time.perf_counter() - started)
        assert body["totals"]["requests"] == want
    first, best = took[0], min(took[1:])
    assert first < 0.300, f"the first usage_summary(range=all) took {first * 1000:.0f} ms"
    assert best < 0.150, f"usage_summary(range=all) took {best * 1000:.0f} ms after the first"
    # the events after the seal are read live, and the next read is as fast
    call_command("generate_usage", tenant.slug, events=1_000, days=1, agents=3, no_rollup=True)
    started = time.perf_counter()
    assert usage_summary(tenant=tenant, range_name="all")["totals"]["requests"] == want + 1_000
    assert time.perf_counter() - started < 0.150
