"""Billing models: plans, subscriptions, budgets, alerts, notifications, the Stripe ledger and reconciliation."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_cryptography.fields import encrypt

from tenants.scoping import TenantOwned


class Tier(models.TextChoices):
    NONE = "", "None (BYOK / custom only)"
    STARTER = "starter", "Economy"
    PRO = "pro", "Standard"
    ULTRA = "ultra", "Premium"
    ENTERPRISE = "enterprise", "Enterprise"


class Plan(models.Model):
    """What a tenant pays for and may do; admins edit plans in Django admin."""

    slug = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100, help_text="Shown to users, e.g. “Standard”.")
    description = models.TextField(blank=True)
    is_public = models.BooleanField(default=True, help_text="Offered on the plan page.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    price_flat_usd = models.DecimalField(
        "flat monthly price (USD)", max_digits=10, decimal_places=2, default=Decimal(0)
    )
    price_per_agent_usd = models.DecimalField(
        "monthly price per Agent (USD)", max_digits=10, decimal_places=2, default=Decimal(0)
    )
    platform_allowed = models.BooleanField(
        "platform-managed keys allowed",
        default=False,
        help_text="BYOK and custom endpoints are allowed on every plan; this adds the platform's own keys.",
    )
    tier = models.CharField("managed tier", max_length=16, choices=Tier.choices, blank=True)
    tier_models = models.JSONField(
        "backend models of the tier",
        default=list,
        blank=True,
        help_text='Catalog ids in order of preference, e.g. ["anthropic:claude-haiku-4.5", "openai:gpt-5-mini"].',
    )
    included_tokens = models.BigIntegerField("included tokens per month", default=0)
    overage_usd_per_mtok = models.DecimalField(
        "overage price per 1M tokens (USD)", max_digits=10, decimal_places=4, default=Decimal(0)
    )
    markup = models.DecimalField(
        "markup on list cost",
        max_digits=6,
        decimal_places=4,
        default=Decimal(0),
        help_text="0.2 = billed price is list cost + 20 %.",
    )
    rpm_tenant = models.PositiveIntegerField(
        "requests per minute per tenant", null=True, blank=True, help_text="Empty = no limit."
    )
    rpm_key = models.PositiveIntegerField("requests per minute per API key", null=True, blank=True)
    max_concurrency = models.PositiveIntegerField("concurrent calls per tenant", null=True, blank=True)
    monthly_request_cap = models.PositiveIntegerField("requests per month", null=True, blank=True)
    warn_tcu = models.BigIntegerField(
        "default warn cap (TCU)", null=True, blank=True, help_text="Empty = SPEND_ALERT_TCU_WARN."
    )
    hard_tcu = models.BigIntegerField(
        "default hard cap (TCU)", null=True, blank=True, help_text="Empty = SPEND_ALERT_TCU_HARD."
    )
    stripe_plan_id = models.CharField(
        max_length=100,
        blank=True,
        editable=False,
        help_text="Stripe Plan this plan's price was last synced to.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_paid(self) -> bool:
        return self.price_flat_usd > 0 or self.price_per_agent_usd > 0

    @property
    def per_agent(self) -> bool:
        return self.price_per_agent_usd > 0

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.price_flat_usd > 0 and self.price_per_agent_usd > 0:
            # Stripe subscriptions here carry one item (one Plan): a plan is priced one way or the other.
            errors["price_flat_usd"] = "Set either a flat price or a price per Agent, not both."
        if self.warn_tcu is not None and self.hard_tcu is not None and self.warn_tcu > self.hard_tcu:
            errors["warn_tcu"] = "The warn cap cannot be above the hard cap."
        if self.tier and not self.platform_allowed:
            errors["platform_allowed"] = "A managed tier needs platform-managed keys."
        if errors:
            raise ValidationError(errors)


class ManagedTier(models.Model):
    """A managed LLM tier sold per agent (Starter / Pro / Ultra); admins map it to backend models."""

    slug = models.SlugField(max_length=32, unique=True, help_text="starter, pro or ultra.")
    name = models.CharField(max_length=100, help_text="What customers see, e.g. “Pro”.")
    internal_name = models.CharField(max_length=100, blank=True, help_text="Economy, Standard or Premium.")
    description = models.CharField(
        max_length=300, blank=True, help_text="The plain sentence customers read; no model names."
    )
    popular = models.BooleanField(default=False, help_text="Shown with a POPULAR badge.")
    price_usd = models.DecimalField(
        "monthly price per agent (USD)", max_digits=10, decimal_places=2, default=Decimal(0)
    )
    included_tokens = models.BigIntegerField("included tokens per agent per month", default=0)
    overage_usd_per_mtok = models.DecimalField(
        "overage price per 1M tokens (USD)", max_digits=10, decimal_places=4, default=Decimal(0)
    )
    sort_order = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    stripe_plan_id = models.CharField(
        max_length=100,
        blank=True,
        editable=False,
        help_text="Stripe Plan this tier's price was last synced to.",
    )
    # Declared last: from here on `models` in this class body names the field, not django.db.models.
    models = models.JSONField(
        "backend models",
        default=list,
        help_text='Catalog ids; the first is what `default` calls, e.g. ["openai:gpt-4o-mini", '
        '"anthropic:claude-haiku-4.5"].',
    )

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class ManagedAgent(TenantOwned):
    """An agent on a managed tier; agent NULL is the workspace's default agent (calls made without an agent).

    Turning managed LLM off ends the row (`ended_at`) rather than deleting it: the period's overage still counts
    an agent that was managed during it. Live rows are those with `ended_at` NULL (one per agent)."""

    agent = models.ForeignKey(
        "tenants.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="managed"
    )
    tier = models.ForeignKey(ManagedTier, on_delete=models.PROTECT, related_name="agents")
    enabled_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Empty while the agent is managed.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "agent"],
                condition=models.Q(ended_at__isnull=True),
                name="uniq_managed_agent",
            ),
            models.UniqueConstraint(
                fields=["tenant"],
                condition=models.Q(agent__isnull=True, ended_at__isnull=True),
                name="uniq_managed_default_agent",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "ended_at"])]
        ordering = ["tenant_id", "agent_id", "enabled_at"]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.agent_id or 'default'} on {self.tier_id}"


class Subscription(TenantOwned):
    """A tenant's plan, mirrored to Stripe (customer, subscription), and its cap overrides."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        TRIALING = "trialing"
        INCOMPLETE = "incomplete"
        PAST_DUE = "past_due"
        CANCELED = "canceled"

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    past_due_since = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=64, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=64, blank=True, db_index=True)
    quantity = models.PositiveIntegerField(default=1, help_text="Agents billed (per-agent plans).")
    current_period_end = models.DateTimeField(null=True, blank=True)
    warn_tcu_override = models.BigIntegerField("warn cap override (TCU)", null=True, blank=True)
    hard_tcu_override = models.BigIntegerField("hard cap override (TCU)", null=True, blank=True)
    alert_webhook_url = models.URLField(
        max_length=500, blank=True, help_text="Optional: cap alerts are POSTed here, signed."
    )
    alert_webhook_secret = encrypt(models.CharField(max_length=100, blank=True))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant_id} on {self.plan_id} ({self.status})"

    def grace_ends_at(self, grace_days: int) -> datetime | None:
        if self.status != self.Status.PAST_DUE or self.past_due_since is None:
            return None
        return self.past_due_since + timedelta(days=grace_days)


class AgentBudget(TenantOwned):
    """An Agent's own monthly TCU budget; the gateway refuses its calls beyond it (402)."""

    agent = models.OneToOneField("tenants.Agent", on_delete=models.CASCADE, related_name="budget")
    monthly_tcu = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.monthly_tcu} TCU"


class AlertSent(TenantOwned):
    """One row per tenant, period and threshold: the unique constraint is what makes an alert go out once."""

    period = models.CharField(max_length=7)
    threshold = models.CharField(
        max_length=32, help_text="tcu_warn, tcu_hard, tokens_50, tokens_80, tokens_100"
    )
    value = models.BigIntegerField(default=0, help_text="Usage when the alert was sent.")
    limit = models.BigIntegerField(default=0)
    emails_sent = models.PositiveIntegerField(default=0)
    webhook_status = models.CharField(
        max_length=16, blank=True, help_text="'' = no webhook, pending, delivered, failed"
    )
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period", "threshold"], name="uniq_alert_once")
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.period} {self.threshold}"


class Notification(TenantOwned):
    """An in-app notification, for a whole tenant (user empty) or one user."""

    class Level(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"

    user = models.ForeignKey(
        "tenants.User", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.INFO)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title


class LedgerEntry(TenantOwned):
    """What the project has charged (or is about to charge) through Stripe: one row per tenant, period, kind.

    Stripe is only written to while holding this row's lock, and an entry without a Stripe id is first
    looked up in Stripe by its `ledger_key` metadata, so a retried or repeated push never charges twice.
    """

    class Kind(models.TextChoices):
        OVERAGE = "overage"

    class State(models.TextChoices):
        PENDING = "pending"
        PUSHED = "pushed"
        INVOICED = "invoiced"
        FAILED = "failed"

    period = models.CharField(max_length=7)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OVERAGE)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    tokens = models.BigIntegerField(default=0, help_text="Billable tokens (beyond the included amount).")
    amount_cents = models.BigIntegerField(default=0, help_text="What Stripe should hold (cents).")
    pushed_amount_cents = models.BigIntegerField(
        default=0, help_text="The pending Stripe item's amount (cents)."
    )
    invoiced_cents = models.BigIntegerField(
        default=0, help_text="Already on a Stripe invoice (cents); later growth goes on a new pending item."
    )
    currency = models.CharField(max_length=3, default="usd")
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    stripe_invoice_item_id = models.CharField(max_length=64, blank=True, db_index=True)
    stripe_invoice_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "period", "kind"], name="uniq_ledger_entry")]
        ordering = ["-period", "tenant_id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.period} {self.kind} {self.amount_cents}c ({self.state})"

    @property
    def ledger_key(self) -> str:
        return f"{self.tenant_id}:{self.period}:{self.kind}"


class StripeEvent(models.Model):
    """Every Stripe webhook event received, stored by id so that each is processed once."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class ReconciliationRun(models.Model):
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    period = models.CharField(max_length=7)
    tenants_checked = models.PositiveIntegerField(default=0)
    issues_found = models.PositiveIntegerField(default=0)
    issues_repaired = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation {self.period} at {self.started_at:%Y-%m-%d %H:%M}"


class ReconciliationIssue(models.Model):
    """A difference between usage, the ledger and Stripe; repaired when safe, otherwise left for a human."""

    class Kind(models.TextChoices):
        ROLLUP_DRIFT = "rollup_drift", "Usage rollup differs from events"
        MISSING_PUSH = "missing_push", "Overage not pushed to Stripe"
        AMOUNT_DRIFT = "amount_drift", "Stripe item amount differs from the ledger"
        DUPLICATE_ITEM = "duplicate_item", "Duplicate invoice item in Stripe"
        ORPHAN_ITEM = "orphan_item", "Stripe item without a ledger entry"
        QUANTITY_DRIFT = "quantity_drift", "Subscription quantity differs from Agents"
        STATUS_DRIFT = "status_drift", "Subscription status differs from Stripe"
        SUBSCRIPTION_MISSING = "subscription_missing", "Paid plan without a Stripe subscription"
        STRIPE_ERROR = "stripe_error", "Stripe could not be read"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="issues")
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    period = models.CharField(max_length=7)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.TextField()
    repaired = models.BooleanField(default=False)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="Set by an admin once handled.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} ({'repaired' if self.repaired else 'open'})"
