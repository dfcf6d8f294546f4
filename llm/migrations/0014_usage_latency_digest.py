"""Usage rollups keep a latency digest (calls per ~5 % wide logarithmic bucket) instead of a 12-bucket histogram,
so p95 is read within a few percent instead of as a bucket's upper bound.

The rollups and their watermarks are cleared (both ways): they are derived data, the events are read live meanwhile,
and the schedule's next rollup rebuilds them."""

from django.db import migrations, models


def clear_rollups(apps, schema_editor):
    for name in ("UsageWatermark", "UsageHourly", "UsageDaily"):
        apps.get_model("llm", name)._base_manager.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0013_usage_watermark"),
    ]

    operations = [
        migrations.RunPython(clear_rollups, clear_rollups),
        migrations.RemoveField(model_name="usagedaily", name="latency_hist"),
        migrations.RemoveField(model_name="usagehourly", name="latency_hist"),
        migrations.AddField(
            model_name="usagedaily", name="latency_digest", field=models.JSONField(default=dict)
        ),
        migrations.AddField(
            model_name="usagehourly", name="latency_digest", field=models.JSONField(default=dict)
        ),
    ]
