"""Migration 0016 (exact token accounting) run by Django's migration executor: it fills the approved cache-read and
cache-write prices on the seeded models, leaves rows whose prices an admin edited (or that an admin made) alone,
and a later seed keeps them so."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from llm.config.catalog import seed_catalog
from llm.models import CatalogModel

pytestmark = pytest.mark.django_db

BEFORE = ("llm", "0015_cost_baseline")
MIGRATION = ("llm", "0016_exact_token_accounting")


def _migrate(target: tuple[str, str]) -> None:
    # The test runs in one transaction: check the rows' deferred constraints now, or PostgreSQL refuses to alter
    # a table whose rows changed earlier in it ("pending trigger events").
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    MigrationExecutor(connection).migrate([target])


def _before_model():
    """CatalogModel as it was before the cache prices (the database lacks their columns then)."""
    return MigrationExecutor(connection).loader.project_state([BEFORE]).apps.get_model("llm", "CatalogModel")


@pytest.fixture
def seeded_before():
    _migrate(BEFORE)
    yield
    _migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("llm")))


def _prices(model_id: str) -> tuple[Decimal | None, Decimal | None]:
    m = CatalogModel.objects.get(pk=model_id)
    return m.cache_read_usd_per_mtok, m.cache_write_usd_per_mtok


def test_fills_the_list_cache_prices(seeded_before):
    _migrate(MIGRATION)
    assert _prices("anthropic:claude-sonnet-4.5") == (Decimal("0.30"), Decimal("3.75"))
    assert _prices("anthropic:claude-haiku-4.5") == (Decimal("0.10"), Decimal("1.25"))
    assert _prices("openai:gpt-5") == (Decimal("0.125"), None)
    assert _prices("openai:gpt-5-mini") == (Decimal("0.025"), None)
    assert _prices("openai:gpt-4o") == (Decimal("1.25"), None)
    assert _prices("openai:gpt-4o-mini") == (Decimal("0.075"), None)
    assert _prices("google:gemini-2.5-flash") == (Decimal("0.03"), None)
    assert _prices("mistral:mistral-large") == (None, None)  # no list price: metered at the input price
    assert seed_catalog().updated == 0  # the seed agrees with what the migration wrote


def test_leaves_rows_whose_prices_an_admin_edited(seeded_before):
    _before_model().objects.filter(pk="anthropic:claude-haiku-4.5").update(input_usd_per_mtok=Decimal("0.80"))
    _migrate(MIGRATION)
    assert _prices("anthropic:claude-haiku-4.5") == (None, None)
    assert _prices("anthropic:claude-sonnet-4.5") == (Decimal("0.30"), Decimal("3.75"))
    result = seed_catalog()
    assert _prices("anthropic:claude-haiku-4.5") == (None, None)  # seeding again keeps the admin's row
    assert CatalogModel.objects.get(pk="anthropic:claude-haiku-4.5").input_usd_per_mtok == Decimal("0.80")
    assert result.kept_edits >= 3
