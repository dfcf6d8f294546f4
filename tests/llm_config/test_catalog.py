"""The catalog: the seeded list, the listing API with every filter, caching, seeding that keeps admins' edits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from llm.config.catalog import get_catalog
from llm.models import CatalogModel

pytestmark = pytest.mark.django_db

APPROVED_PRICES = {
    "anthropic:claude-sonnet-4.5": ("3", "15"),
    "anthropic:claude-haiku-4.5": ("1", "5"),
    "openai:gpt-5": ("1.25", "10"),
    "openai:gpt-5-mini": ("0.25", "2"),
    "openai:gpt-5-codex": ("1.25", "10"),
    "mistral:mistral-large": ("2", "6"),
    "mistral:mistral-medium-3.1": ("0.4", "2"),
    "meta:llama-4-scout": ("0.08", "0.30"),
    "google:gemini-2.5-flash": ("0.30", "2.50"),
    "google:gemini-2.5-flash-lite": ("0.10", "0.40"),
    "deepseek:deepseek-v3.1": ("0.20", "0.80"),
    "deepseek:deepseek-v3.1-terminus": ("0.27", "1.00"),
    "qwen:qwen3-max": ("1.20", "6"),
    "qwen:qwen3-coder-plus": ("1", "5"),
    "xai:grok-4-fast": ("0.20", "0.50"),
    "xai:grok-code-fast-1": ("0.20", "1.50"),
    "cohere:command-a": ("2.50", "10"),
    "minimax:minimax-m2.5": ("0.30", "1.20"),
    "openai:text-embedding-3-small": ("0.02", "0"),
    # the managed tiers' models and Groq (issue #14)
    "mistral:mistral-small": ("0.10", "0.30"),
    "openai:gpt-4o-mini": ("0.15", "0.60"),
    "openai:gpt-4o": ("2.50", "10"),
    "anthropic:claude-sonnet-4": ("3", "15"),
    "groq:llama-3.3-70b": ("0.59", "0.79"),
}


def _ids(body):
    return [m["id"] for p in body["providers"] for m in p["models"]]


def test_migration_loads_the_approved_prices():
    for model_id, (price_in, price_out) in APPROVED_PRICES.items():
        m = CatalogModel.objects.get(pk=model_id)
        assert (m.input_usd_per_mtok, m.output_usd_per_mtok) == (Decimal(price_in), Decimal(price_out)), (
            model_id
        )
    assert CatalogModel.objects.filter(embeddings=True).values("provider").distinct().count() == 4
    assert CatalogModel.objects.filter(pk="custom:enterprise").exists()


def test_list_models_grouped_by_provider(manage_client):
    body = manage_client.get("/api/llm/models").json()
    assert body["count"] == len(_ids(body)) == CatalogModel.objects.filter(enabled=True).count()
    anthropic = next(p for p in body["providers"] if p["id"] == "anthropic")
    assert anthropic["name"] == "Anthropic"
    sonnet = next(m for m in anthropic["models"] if m["id"] == "anthropic:claude-sonnet-4.5")
    assert sonnet == {
        "id": "anthropic:claude-sonnet-4.5",
        "name": "Claude Sonnet 4.5",
        "input_usd_per_mtok": 3.0,
        "output_usd_per_mtok": 15.0,
        "cache_read_usd_per_mtok": 0.3,
        "cache_write_usd_per_mtok": 3.75,
        "context_length": 200000,
        "max_output_tokens": 64000,
        "capabilities": ["reasoning", "vision", "tools", "coding"],
        "eu_hosted": False,
        "recommended": True,
        "tier": "flagship",
    }


def test_filter_eu_lists_only_eu_hosted_models(manage_client):
    ids = _ids(manage_client.get("/api/llm/models?filter=eu").json())
    assert "mistral:mistral-large" in ids
    assert "cohere:command-a" in ids
    assert all(CatalogModel.objects.get(pk=i).eu_hosted for i in ids)


def test_filter_recommended(manage_client):
    ids = _ids(manage_client.get("/api/llm/models?filter=recommended").json())
    assert "anthropic:claude-sonnet-4.5" in ids
    assert set(ids) == set(
        CatalogModel.objects.filter(recommended=True, enabled=True).values_list("pk", flat=True)
    )


def test_filter_provider(manage_client):
    body = manage_client.get("/api/llm/models?filter=provider:openai").json()
    assert [p["id"] for p in body["providers"]] == ["openai"]
    assert "openai:gpt-5" in _ids(body)


def test_filter_tier_combines_with_filter(manage_client):
    body = manage_client.get("/api/llm/models?filter=provider:google&tier=budget").json()
    assert _ids(body) == ["google:gemini-2.5-flash-lite"]
    for tier in ("flagship", "balanced", "fast", "budget"):
        ids = _ids(manage_client.get(f"/api/llm/models?tier={tier}").json())
        assert ids
        assert all(CatalogModel.objects.get(pk=i).tier == tier for i in ids)


@pytest.mark.parametrize(
    ("query", "field"),
    [("filter=cheap", "filter"), ("filter=provider:nope", "filter"), ("tier=huge", "tier")],
)
def test_unknown_filter_is_400_naming_the_allowed_values(manage_client, query, field):
    response = manage_client.get(f"/api/llm/models?{query}")
    assert response.status_code == 400
    message = response.json()[field][0]
    assert ("eu" in message and "recommended" in message) or "flagship" in message or "openai" in message


def test_disabled_models_are_not_listed(manage_client):
    CatalogModel.objects.filter(pk="openai:gpt-5").update(enabled=False)
    call_command("seed_catalog")  # bumps the catalog version; keeps the admin's "disabled"
    assert "openai:gpt-5" not in _ids(manage_client.get("/api/llm/models").json())


def test_listing_is_served_from_cache_one_query_when_cold(manage_client):
    from django.core.cache import cache

    from llm.config.catalog import forget_memo
    from llm.config.versions import global_version

    manage_client.get("/api/llm/models")  # warm the version lookup
    forget_memo()
    cache.delete(f"llm:catalog:{global_version()}")
    with CaptureQueriesContext(connection) as cold:
        get_catalog()
    assert len(cold.captured_queries) == 1
    forget_memo()
    with CaptureQueriesContext(connection) as warm:
        get_catalog()
    assert len(warm.captured_queries) == 0


def test_seed_is_idempotent_and_keeps_admin_edits_unless_forced(capsys):
    CatalogModel.objects.filter(pk="openai:gpt-5").update(
        input_usd_per_mtok=Decimal("9.99"), recommended=False
    )
    call_command("seed_catalog")
    call_command("seed_catalog")
    gpt5 = CatalogModel.objects.get(pk="openai:gpt-5")
    assert gpt5.input_usd_per_mtok == Decimal("9.99")
    assert gpt5.recommended is False
    assert "0 created" in capsys.readouterr().out
    call_command("seed_catalog", "--force")
    gpt5.refresh_from_db()
    assert gpt5.input_usd_per_mtok == Decimal("1.25")
    assert gpt5.recommended is True


def test_seed_restores_a_deleted_model():
    CatalogModel.objects.filter(pk="openai:gpt-5-mini").delete()
    call_command("seed_catalog")
    assert CatalogModel.objects.filter(pk="openai:gpt-5-mini").exists()


def test_admin_lists_filters_searches_and_bulk_disables_at_once(admin_client, manage_client):
    from django.contrib.admin.models import LogEntry

    page = admin_client.get("/admin/llm/catalogmodel/?tier__exact=flagship&q=gpt")
    assert page.status_code == 200
    assert "openai:gpt-5" in page.content.decode()
    assert "openai:gpt-5" in _ids(manage_client.get("/api/llm/models").json())  # the catalog is cached now
    response = admin_client.post(
        "/admin/llm/catalogmodel/",
        {"action": "disable_models", "_selected_action": ["openai:gpt-5", "openai:gpt-5-codex"]},
    )
    assert response.status_code == 302
    ids = _ids(manage_client.get("/api/llm/models").json())
    assert "openai:gpt-5" not in ids
    assert "openai:gpt-5-codex" not in ids
    assert LogEntry.objects.filter(object_id="openai:gpt-5", change_message__contains="Disabled").exists()


def test_admin_price_edit_invalidates_the_cache(admin_client, manage_client):
    manage_client.get("/api/llm/models")
    url = "/admin/llm/catalogmodel/openai:gpt-5-mini/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data = {k: v for k, v in data.items() if not isinstance(v, bool) or v}
    data.update(input_usd_per_mtok="0.5", provider="openai")
    response = admin_client.post(url, data)
    assert response.status_code == 302, page.content[:0]
    body = manage_client.get("/api/llm/models?filter=provider:openai").json()
    mini = next(m for m in body["providers"][0]["models"] if m["id"] == "openai:gpt-5-mini")
    assert mini["input_usd_per_mtok"] == 0.5


def test_admin_edits_the_cache_prices(admin_client, manage_client):
    manage_client.get("/api/llm/models")
    url = "/admin/llm/catalogmodel/openai:gpt-5-mini/change/"
    page = admin_client.get(url)
    assert "cache-read usd / 1m tokens" in page.content.decode().lower()
    form = page.context["adminform"].form
    assert form.initial["cache_read_usd_per_mtok"] == Decimal("0.025")
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data = {k: v for k, v in data.items() if not isinstance(v, bool) or v}
    data.update(cache_read_usd_per_mtok="0.02", cache_write_usd_per_mtok="", provider="openai")
    assert admin_client.post(url, data).status_code == 302
    body = manage_client.get("/api/llm/models?filter=provider:openai").json()
    mini = next(m for m in body["providers"][0]["models"] if m["id"] == "openai:gpt-5-mini")
    assert (mini["cache_read_usd_per_mtok"], mini["cache_write_usd_per_mtok"]) == (0.02, None)
