"""Migration 0006 run by Django's migration executor: it adds Groq and the managed tiers' models to a database
seeded before them, keeps admins' rows both ways, is idempotent, and its reverse removes only what it added.

The rows are read through the models as they were at 0006 (later migrations add catalog columns the database
lacks while these tests run)."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from llm.config import versions

pytestmark = pytest.mark.django_db

BEFORE = ("llm", "0005_seed_catalog")
MIGRATION = ("llm", "0006_managed_tier_models")
NEW_MODELS = {
    "mistral:mistral-small",
    "openai:gpt-4o-mini",
    "openai:gpt-4o",
    "anthropic:claude-sonnet-4",
    "groq:llama-3.3-70b",
}


def _migrate(target: tuple[str, str]) -> None:
    # The test runs in one transaction: check the rows' deferred constraints now, or PostgreSQL refuses to alter
    # a table whose rows changed earlier in it ("pending trigger events").
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    MigrationExecutor(connection).migrate([target])


def _model(name: str):
    """The model class as it was at 0006 (the same schema as at 0005)."""
    return MigrationExecutor(connection).loader.project_state([MIGRATION]).apps.get_model("llm", name)


def _rows() -> dict[str, tuple]:
    """Every catalog row's stored values (not `updated_at`), to prove which rows a step touched."""
    rows = {f"provider {p['id']}": tuple(sorted(p.items())) for p in _model("Provider").objects.values()}
    for m in _model("CatalogModel").objects.values():
        rows[m["id"]] = tuple(sorted((k, v) for k, v in m.items() if k != "updated_at"))
    return rows


@pytest.fixture
def seeded_before():
    """A database as it was before 0006: the catalog without Groq and the new models."""
    _migrate(BEFORE)
    yield
    _migrate(max(MigrationExecutor(connection).loader.graph.leaf_nodes("llm")))


def test_reverse_removes_the_new_rows_and_nothing_else(seeded_before):
    assert not _model("CatalogModel").objects.filter(pk__in=NEW_MODELS).exists()
    assert not _model("Provider").objects.filter(pk="groq").exists()
    assert _model("CatalogModel").objects.filter(pk="openai:gpt-5").exists()
    assert _model("CatalogModel").objects.count() > 20


def test_forward_adds_groq_and_the_models_at_list_prices(seeded_before, django_capture_on_commit_callbacks):
    untouched = _rows()
    version = cache.get(versions._GLOBAL_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        _migrate(MIGRATION)
    groq = _model("Provider").objects.get(pk="groq")
    assert (groq.protocol, groq.default_base_url) == ("openai_compat", "https://api.groq.com/openai/v1")
    llama = _model("CatalogModel").objects.get(pk="groq:llama-3.3-70b")
    assert (
        llama.native_model_id,
        llama.openrouter_model_id,
        llama.input_usd_per_mtok,
        llama.output_usd_per_mtok,
        llama.context_length,
        llama.max_output_tokens,
    ) == (
        "llama-3.3-70b-versatile",
        "meta-llama/llama-3.3-70b-instruct",
        Decimal("0.59"),
        Decimal("0.79"),
        131_072,
        32_768,
    )
    assert (
        _model("CatalogModel").objects.get(pk="anthropic:claude-sonnet-4").native_model_id
        == "claude-sonnet-4-0"
    )
    assert (
        set(_model("CatalogModel").objects.filter(pk__in=NEW_MODELS).values_list("pk", flat=True))
        == NEW_MODELS
    )
    after = _rows()
    assert {k: v for k, v in after.items() if k in untouched} == untouched  # no existing row changed
    # the cached catalog went stale with the commit
    assert cache.get(versions._GLOBAL_KEY) != version


def test_forward_keeps_an_admins_rows(seeded_before):
    _model("CatalogModel").objects.filter(pk="openai:gpt-5").update(input_usd_per_mtok=Decimal("9.99"))
    # an admin added GPT-4o under the same id before the approved list had it
    _model("CatalogModel").objects.create(
        id="openai:gpt-4o", provider_id="openai", name="Our GPT-4o", input_usd_per_mtok=Decimal("4")
    )
    _migrate(MIGRATION)
    assert _model("CatalogModel").objects.get(pk="openai:gpt-5").input_usd_per_mtok == Decimal("9.99")
    own = _model("CatalogModel").objects.get(pk="openai:gpt-4o")
    assert (own.name, own.input_usd_per_mtok, own.seeded_values) == ("Our GPT-4o", Decimal("4"), {})
    assert _model("CatalogModel").objects.get(pk="openai:gpt-4o-mini").input_usd_per_mtok == Decimal("0.15")


def test_forward_is_idempotent(seeded_before):
    _migrate(MIGRATION)
    before = _rows()
    importlib.import_module("llm.migrations.0006_managed_tier_models").add(apps, None)
    assert _rows() == before


def test_reverse_keeps_rows_an_admin_edited_or_made(seeded_before):
    _migrate(MIGRATION)
    _model("CatalogModel").objects.filter(pk="groq:llama-3.3-70b").update(input_usd_per_mtok=Decimal("0.50"))
    _migrate(BEFORE)
    assert _model("CatalogModel").objects.get(pk="groq:llama-3.3-70b").input_usd_per_mtok == Decimal("0.50")
    assert _model("Provider").objects.filter(pk="groq").exists()  # still has a model
    assert not _model("CatalogModel").objects.filter(pk__in=NEW_MODELS - {"groq:llama-3.3-70b"}).exists()
