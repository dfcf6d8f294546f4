"""A custom endpoint's prompt-cache prices (Credential): empty, the input price, for every endpoint saved before."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0016_exact_token_accounting"),
    ]

    operations = [
        migrations.AddField(
            model_name="credential",
            name="cache_read_usd_per_mtok",
            field=models.DecimalField(
                blank=True,
                decimal_places=6,
                help_text="Input tokens read from the endpoint's prompt cache; empty: the input price.",
                max_digits=12,
                null=True,
                verbose_name="cache-read USD / 1M tokens",
            ),
        ),
        migrations.AddField(
            model_name="credential",
            name="cache_write_usd_per_mtok",
            field=models.DecimalField(
                blank=True,
                decimal_places=6,
                help_text="Input tokens written to the endpoint's prompt cache; empty: the input price.",
                max_digits=12,
                null=True,
                verbose_name="cache-write USD / 1M tokens",
            ),
        ),
    ]
