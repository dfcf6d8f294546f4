"""Usage rollups keep the request type (connection tests apart from traffic) and the provider in their key.

The rows rolled up before lumped tests in with traffic, so they are cleared (both ways): they are derived data, and
the schedule's next rollup rebuilds them from the events."""

from django.db import migrations, models


def clear_rollups(apps, schema_editor):
    for name in ("UsageHourly", "UsageDaily"):
        apps.get_model("llm", name)._base_manager.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0011_preferences_embedding_model"),
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="usagedaily", name="uniq_usage_daily"),
        migrations.RemoveConstraint(model_name="usagehourly", name="uniq_usage_hourly"),
        migrations.RunPython(clear_rollups, clear_rollups),
        migrations.AddField(
            model_name="usagedaily",
            name="request_type",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="usagehourly",
            name="request_type",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddConstraint(
            model_name="usagedaily",
            constraint=models.UniqueConstraint(
                fields=("tenant", "day", "agent", "model", "provider", "mode", "request_type"),
                name="uniq_usage_daily",
                nulls_distinct=False,
            ),
        ),
        migrations.AddConstraint(
            model_name="usagehourly",
            constraint=models.UniqueConstraint(
                fields=("tenant", "hour", "agent", "model", "provider", "mode", "request_type"),
                name="uniq_usage_hourly",
                nulls_distinct=False,
            ),
        ),
    ]
