"""The usage rollup migrations run both ways on a database with rollups in it (they are derived data: cleared, and
rebuilt by the next rollup)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def _migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return MigrationExecutor(connection).loader.project_state([target]).apps


@pytest.fixture
def latest():
    yield
    _migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("llm")))


def _hourly_row(apps, tenant_id: int, **extra) -> None:
    apps.get_model("llm", "UsageHourly")._base_manager.create(
        tenant_id=tenant_id, hour=datetime(2026, 11, 30, 10, tzinfo=UTC), model="openai:gpt-5-mini", **extra
    )


def test_request_type_migration_both_ways(tenant, latest):
    apps = _migrate(("llm", "0011_preferences_embedding_model"))
    _hourly_row(apps, tenant.id, requests=3)
    apps = _migrate(("llm", "0012_usage_rollup_request_type"))
    hourly = apps.get_model("llm", "UsageHourly")._base_manager
    assert not hourly.exists()  # rebuilt from the events by the next rollup
    _hourly_row(apps, tenant.id, request_type="chat", requests=2)
    _hourly_row(apps, tenant.id, request_type="test", requests=1)
    apps = _migrate(("llm", "0011_preferences_embedding_model"))
    assert not apps.get_model("llm", "UsageHourly")._base_manager.exists()


def test_watermark_and_digest_migrations_both_ways(tenant, latest):
    apps = _migrate(("llm", "0013_usage_watermark"))
    _hourly_row(apps, tenant.id, requests=3, latency_hist=[0, 3])
    apps.get_model("llm", "UsageWatermark")._base_manager.create(
        tenant_id=tenant.id, event_id=10, through=datetime(2026, 11, 30, 11, tzinfo=UTC)
    )
    apps = _migrate(("llm", "0014_usage_latency_digest"))
    assert not apps.get_model("llm", "UsageHourly")._base_manager.exists()
    assert not apps.get_model("llm", "UsageWatermark")._base_manager.exists()  # rebuilt by the next rollup
    _hourly_row(apps, tenant.id, requests=2, latency_digest={"101": [2, 320]})
    apps = _migrate(("llm", "0012_usage_rollup_request_type"))
    assert not apps.get_model("llm", "UsageHourly")._base_manager.exists()


def test_cost_baseline_migration_both_ways(latest):
    apps = _migrate(("llm", "0015_cost_baseline"))
    apps.get_model("llm", "CostBaseline")._base_manager.create(model_id="openai:gpt-5")
    apps = _migrate(("llm", "0014_usage_latency_digest"))
    with pytest.raises(LookupError):
        apps.get_model("llm", "CostBaseline")
