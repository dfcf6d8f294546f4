"""Names unique per tenant: an agent's name, and an API key's among the keys not revoked (case-insensitive).
Existing duplicates are renamed first ("name (2)", "name (3)", …) so the constraints can be added."""

import django.db.models.functions.text
from django.db import migrations, models


def _dedupe(model, rows) -> None:
    seen: dict[tuple[int, str], int] = {}
    taken = {(r.tenant_id, r.name.lower()) for r in rows}
    for row in rows:
        key = (row.tenant_id, row.name.lower())
        if key not in seen:
            seen[key] = 1
            continue
        n = seen[key]
        while True:
            n += 1
            suffix = f" ({n})"
            candidate = row.name[: model._meta.get_field("name").max_length - len(suffix)] + suffix
            if (row.tenant_id, candidate.lower()) not in taken:
                break
        seen[key] = n
        taken.add((row.tenant_id, candidate.lower()))
        row.name = candidate
        row.save(update_fields=["name"])


def rename_duplicates(apps, schema_editor) -> None:
    agent = apps.get_model("tenants", "Agent")
    apikey = apps.get_model("tenants", "ApiKey")
    _dedupe(agent, list(agent._base_manager.order_by("tenant_id", "id")))
    _dedupe(apikey, list(apikey._base_manager.filter(revoked_at__isnull=True).order_by("tenant_id", "id")))


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.UniqueConstraint(
                models.F("tenant"), django.db.models.functions.text.Lower("name"), name="uniq_agent_name"
            ),
        ),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.UniqueConstraint(
                models.F("tenant"),
                django.db.models.functions.text.Lower("name"),
                condition=models.Q(revoked_at__isnull=True),
                name="uniq_active_apikey_name",
            ),
        ),
    ]
