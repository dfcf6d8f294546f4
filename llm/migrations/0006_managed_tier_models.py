"""Bring the managed tiers' models (Mistral Small 3.2, GPT-4o mini, GPT-4o, Claude Sonnet 4) and the Groq provider
with Llama 3.3 70B to databases seeded before them; rows an admin made or edited are left alone, both ways."""

from django.db import migrations, transaction

PROVIDERS = ("groq",)
MODELS = (
    "mistral:mistral-small",
    "openai:gpt-4o-mini",
    "openai:gpt-4o",
    "anthropic:claude-sonnet-4",
    "groq:llama-3.3-70b",
)


def _classes(apps):
    return {
        "provider_model": apps.get_model("llm", "Provider"),
        "catalog_model": apps.get_model("llm", "CatalogModel"),
    }


def _catalog_changed():
    # Running servers keep the catalog cached for a day: make that copy stale once the change is committed.
    # `robust`: a cache that does not answer must not fail a migration whose rows are already committed.
    from llm.config.versions import bump_config_version

    transaction.on_commit(bump_config_version, robust=True)


def add(apps, schema_editor):
    from llm.config.catalog import catalog_rows_add

    if catalog_rows_add(ids=PROVIDERS + MODELS, **_classes(apps)):
        _catalog_changed()


def remove(apps, schema_editor):
    from llm.config.catalog import catalog_rows_remove

    if catalog_rows_remove(ids=PROVIDERS + MODELS, **_classes(apps)):
        _catalog_changed()


class Migration(migrations.Migration):
    dependencies = [("llm", "0005_seed_catalog")]

    operations = [migrations.RunPython(add, remove)]
