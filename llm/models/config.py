"""Catalog (providers, models), and a tenant's LLM configuration: credentials, preferences and routes."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from tenants.scoping import TenantOwned

__all__ = [
    "CREDENTIAL_KINDS",
    "CatalogModel",
    "Credential",
    "CredentialKind",
    "Preferences",
    "Provider",
    "Route",
    "TenantDataKey",
]


class Protocol(models.TextChoices):
    OPENAI_COMPAT = "openai_compat", "OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    GEMINI = "gemini", "Google Gemini"
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    BEDROCK = "bedrock", "AWS Bedrock"
    COHERE = "cohere", "Cohere"


class Tier(models.TextChoices):
    FLAGSHIP = "flagship", "Flagship"
    BALANCED = "balanced", "Balanced"
    FAST = "fast", "Fast"
    BUDGET = "budget", "Budget"


class Mode(models.TextChoices):
    PLATFORM = "platform", "Platform-managed"
    BYOK = "byok", "Bring your own key"
    CUSTOM = "custom", "Custom endpoint"


class Provider(models.Model):
    """An LLM vendor (or `custom`) and the wire protocol its API speaks."""

    id = models.SlugField(primary_key=True, max_length=40)
    name = models.CharField(max_length=100)
    protocol = models.CharField(max_length=20, choices=Protocol.choices, default=Protocol.OPENAI_COMPAT)
    default_base_url = models.URLField(blank=True)
    docs_url = models.URLField("docs link", blank=True)
    eu_region_available = models.BooleanField("EU region available", default=False)
    sort_order = models.PositiveIntegerField(default=100)
    seeded_values = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="What seed_catalog last wrote; fields that differ were edited here.",
    )

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.name


def _cache_price(verb: str, whose: str) -> models.DecimalField:
    """A prompt-cache price (USD per 1M tokens) of the catalog's models and of an endpoint's, alike; empty: the
    input price. `verb`: read or write."""
    done = {"read": "read from", "write": "written to"}[verb]
    return models.DecimalField(
        f"cache-{verb} USD / 1M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=f"Input tokens {done} the {whose} prompt cache; empty: the input price.",
    )


class CatalogModel(models.Model):
    """A model the platform knows, with its list prices (USD per 1M tokens) and what it can do."""

    CAPABILITIES = ("reasoning", "vision", "tools", "coding", "embeddings")

    id = models.CharField(
        primary_key=True, max_length=120, help_text="`provider:model`, e.g. anthropic:claude-sonnet-4.5"
    )
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    name = models.CharField("display name", max_length=120)
    native_model_id = models.CharField("provider's model id", max_length=200, blank=True)
    openrouter_model_id = models.CharField("OpenRouter model id", max_length=200, blank=True)
    input_usd_per_mtok = models.DecimalField(
        "input USD / 1M tokens", max_digits=12, decimal_places=6, null=True, blank=True
    )
    output_usd_per_mtok = models.DecimalField(
        "output USD / 1M tokens", max_digits=12, decimal_places=6, null=True, blank=True
    )
    cache_read_usd_per_mtok = _cache_price("read", "provider's")
    cache_write_usd_per_mtok = _cache_price("write", "provider's")
    context_length = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning = models.BooleanField(default=False)
    vision = models.BooleanField(default=False)
    tools = models.BooleanField(default=False)
    coding = models.BooleanField(default=False)
    embeddings = models.BooleanField(default=False)
    eu_hosted = models.BooleanField("EU-hosted", default=False)
    recommended = models.BooleanField(default=False)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.BALANCED)
    enabled = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=100)
    notes = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    seeded_values = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="What seed_catalog last wrote; fields that differ were edited here.",
    )

    class Meta:
        ordering = ["provider__sort_order", "sort_order", "id"]
        verbose_name = "catalog model"

    def __str__(self) -> str:
        return self.id

    @property
    def capabilities(self) -> list[str]:
        return [name for name in self.CAPABILITIES if getattr(self, name)]

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1] if ":" in self.id else self.id


class CredentialKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    GOOGLE = "google", "Google Gemini"
    MISTRAL = "mistral", "Mistral"
    OPENROUTER = "openrouter", "OpenRouter"
    COHERE = "cohere", "Cohere"
    DEEPSEEK = "deepseek", "DeepSeek"
    XAI = "xai", "xAI"
    QWEN = "qwen", "Qwen (Alibaba Cloud)"
    META = "meta", "Meta Llama"
    MINIMAX = "minimax", "MiniMax"
    GROQ = "groq", "Groq"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible endpoint"
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    BEDROCK = "bedrock", "AWS Bedrock"
    OLLAMA = "ollama", "Ollama"


CREDENTIAL_KINDS = [value for value, _ in CredentialKind.choices]


class TenantDataKey(TenantOwned):
    """A tenant's data key (Fernet), stored only wrapped by the master keys (`CRYPTOGRAPHY_KEYS`)."""

    version = models.PositiveIntegerField(default=1)
    wrapped_key = models.TextField(
        help_text="The data key encrypted under a master key (never the key itself)."
    )
    master_key_id = models.CharField(
        max_length=16, help_text="Fingerprint of the master key that wraps it now."
    )
    created_under = models.CharField(
        max_length=16, help_text="Fingerprint of the newest master key at creation."
    )
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "version"], name="uniq_tenant_data_key_version")
        ]
        ordering = ["tenant_id", "-version"]

    def __str__(self) -> str:
        return f"data key v{self.version} of tenant {self.tenant_id}"


class Credential(TenantOwned):
    """A tenant's provider secret and endpoint config; the secrets are ciphertext under the tenant's data key."""

    kind = models.CharField(max_length=32, choices=CredentialKind.choices)
    name = models.CharField(max_length=100)
    base_url = models.URLField(max_length=500, blank=True)
    # Non-secret endpoint settings: deployment, api_version, region, access_key_id.
    config = models.JSONField(default=dict, blank=True)
    # Secret fields (api_key, secret_access_key, headers) as one encrypted JSON document.
    secrets_ciphertext = models.TextField(blank=True, editable=False)
    data_key = models.ForeignKey(
        TenantDataKey, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    api_key_masked = models.CharField(max_length=20, blank=True, editable=False)
    input_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    output_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    # An endpoint's prompt-cache prices, as the catalog's (CatalogModel).
    cache_read_usd_per_mtok = _cache_price("read", "endpoint's")
    cache_write_usd_per_mtok = _cache_price("write", "endpoint's")
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)
    last_verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_credential_name")]
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.api_key_masked or 'no key'})"


class Preferences(TenantOwned):
    """A tenant's default route (agent empty) or an Agent's own."""

    agent = models.ForeignKey(
        "tenants.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PLATFORM)
    model = models.CharField(max_length=200)
    temperature = models.DecimalField(max_digits=3, decimal_places=2, default=0.7)
    max_tokens = models.PositiveIntegerField(default=4096)
    eu_only = models.BooleanField(default=False)
    fallbacks = models.JSONField(default=list, blank=True)
    # What `/v1/embeddings` calls for `model: "default"` ("" = the chat model's provider's embedding model when it
    # has one; an agent's empty value follows the workspace's).
    embedding_model = models.CharField(max_length=200, blank=True, default="")
    credential = models.ForeignKey(
        Credential,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="BYOK: the key to use (else the tenant's key for the provider).",
    )
    custom_endpoint = models.ForeignKey(
        Credential,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Custom mode: the enterprise endpoint.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "preferences"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "agent"], name="uniq_preferences", nulls_distinct=False)
        ]

    def __str__(self) -> str:
        return f"preferences of {self.tenant_id}/{self.agent_id or 'default'}"


class Route(TenantOwned):
    """A named route: ordered targets (primary, then fallbacks), optional weights for an A/B split."""

    name = models.SlugField(max_length=64)
    description = models.CharField(max_length=200, blank=True)
    # [{"model": "...", "credential": id|null, "weight": int, "params": {"temperature", "max_tokens"}}]
    targets = models.JSONField(default=list)
    cache_ttl_seconds = models.PositiveIntegerField(null=True, blank=True)
    eu_only = models.BooleanField(default=False)
    # Failures that also move on to the next target, besides rate limits, timeouts and outages (always) and a
    # context window too small (to a target with a larger one, always): ["content_policy"]
    fallback_on = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_route_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"route:{self.name}"
