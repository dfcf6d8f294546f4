"""The usage API stays fast on a large history because it reads rollups (generate_usage + timing)."""

import time

import pytest
from django.core.management import call_command

from llm.usage import usage_summary

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_usage_summary_is_fast_on_a_large_history(tenant, manage_client, capsys):
    call_command("generate_usage", tenant.slug, "--events", "150000", "--days", "90", "--agents", "3")
    out = capsys.readouterr().out
    assert "inserted 150,000 events" in out
    for rng in ("24h", "30d", "90d", "all"):
        best = min(_timed(tenant, rng) for _ in range(3))
        assert best < 0.150, f"range {rng}: {best * 1000:.0f} ms"
    body = manage_client.get("/api/llm/usage?range=all").json()
    assert body["totals"]["requests"] == 150000
    assert len(body["by_agent"]) == 4  # three agents and the unattributed calls


def _timed(tenant, rng):
    started = time.perf_counter()
    usage_summary(tenant=tenant, range_name=rng)
    return time.perf_counter() - started
