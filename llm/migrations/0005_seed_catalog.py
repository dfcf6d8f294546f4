"""Load the approved model catalog (the same code as `manage.py seed_catalog`)."""

from django.db import migrations


def seed(apps, schema_editor):
    from llm.config.catalog import seed_catalog

    seed_catalog(
        provider_model=apps.get_model("llm", "Provider"), catalog_model=apps.get_model("llm", "CatalogModel")
    )


class Migration(migrations.Migration):
    dependencies = [("llm", "0004_llm_config")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
