"""UsageEvent: one row per LLM call (never the prompt or the completion), and its daily rollup."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from tenants.scoping import TenantOwned

__all__ = ["CostBaseline", "UsageDaily", "UsageEvent", "UsageHourly", "UsageWatermark"]


class UsageEvent(TenantOwned):
    class RequestType(models.TextChoices):
        CHAT = "chat"
        EMBEDDING = "embedding"
        ASSISTANT = "assistant"
        JOB = "job"
        TEST = "test"

    class Mode(models.TextChoices):
        PLATFORM = "platform"
        BYOK = "byok"
        CUSTOM = "custom"

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        CLIENT_CLOSED = "client_closed"

    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    agent = models.ForeignKey(
        "tenants.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        "tenants.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_type = models.CharField(max_length=16, choices=RequestType.choices, default=RequestType.CHAT)
    mode = models.CharField(max_length=16, choices=Mode.choices, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    tier = models.CharField(max_length=16, blank=True)
    route = models.CharField(max_length=100, blank=True)
    variant = models.CharField(max_length=200, blank=True, help_text="A/B: the target chosen")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # Parts of input_tokens: read from the provider's prompt cache (priced at the cache-read price) and written to
    # it (at the cache-write price); and the part of output_tokens spent reasoning (billed as output).
    cached_tokens = models.PositiveIntegerField("cache-read tokens", default=0)
    cache_write_tokens = models.PositiveIntegerField("cache-write tokens", default=0, db_default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0, db_default=0)
    tokens_estimated = models.BooleanField(default=False)
    cost_input_usd = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    cost_output_usd = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    billed_usd = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    cost_estimated = models.BooleanField(
        default=False,
        db_default=False,
        help_text="The provider was to report the call's cost (OpenRouter) and did not: metered at the "
        "conservative price",
    )
    tcu = models.BigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    fallback_depth = models.PositiveSmallIntegerField(default=0)
    cached = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    error_kind = models.CharField(max_length=32, blank=True)
    http_status = models.PositiveSmallIntegerField(default=200)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["tenant", "agent", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status}"


class UsageRollup(TenantOwned):
    """Sums of usage per agent, model and mode over one period (see the two concrete tables)."""

    agent = models.ForeignKey(
        "tenants.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=16, blank=True)
    # Connection tests are kept apart from traffic (pages show them on their own; billing counts them).
    request_type = models.CharField(max_length=16, blank=True, default="")
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    # parts of the tokens above, as on UsageEvent
    cache_read_tokens = models.BigIntegerField(default=0, db_default=0)
    cache_write_tokens = models.BigIntegerField(default=0, db_default=0)
    reasoning_tokens = models.BigIntegerField(default=0, db_default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    billed_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    tcu = models.BigIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    # Latency digest (calls per logarithmic bucket, see llm.usage.rollups.DIGEST_STEPS) so p95 works from rollups.
    latency_digest = models.JSONField(default=dict)

    class Meta:
        abstract = True


class UsageDaily(UsageRollup):
    """Per tenant and UTC day: what ranges of whole days read."""

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "day", "agent", "model", "provider", "mode", "request_type"],
                name="uniq_usage_daily",
                nulls_distinct=False,
            )
        ]
        indexes = [models.Index(fields=["tenant", "day"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.model}"


class UsageHourly(UsageRollup):
    """Per tenant and UTC hour: the partial days at both ends of a range; only the current hour is read live."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "hour", "agent", "model", "provider", "mode", "request_type"],
                name="uniq_usage_hourly",
                nulls_distinct=False,
            )
        ]
        indexes = [models.Index(fields=["tenant", "hour"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hour} {self.model}"


class UsageWatermark(TenantOwned):
    """How far a tenant's rollups reach: they hold its events with an id up to `event_id` created before `through`
    (a whole hour). Reads add the events past it live, so totals are exact however far the rollups lag; `version`
    changes with every rollup write, so a read that straddled one reads again (not when a run only moves an idle
    tenant's mark on: no event of its lies between the two, so the figures are the same)."""

    event_id = models.BigIntegerField(default=0)
    through = models.DateTimeField()
    version = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="uniq_usage_watermark")]

    def __str__(self) -> str:
        return f"{self.tenant_id} ≤ #{self.event_id} before {self.through}"


class CostBaseline(models.Model):
    """The model the dashboard and the usage page compare costs with: what the period's calls would have cost on
    it (its list prices × their tokens) beside what they cost. A platform setting, one row, edited in admin;
    without it, the platform default model (Claude Sonnet 4.5)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    model = models.ForeignKey(
        "llm.CatalogModel",
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Calls' costs are compared with what they would have cost on this model.",
    )

    class Meta:
        verbose_name = "cost baseline"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="one_cost_baseline")]

    def __str__(self) -> str:
        return f"Costs compared with {self.model_id}"
