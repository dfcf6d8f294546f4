"""Request and response shapes of the LLM configuration API (documentation and parsing only)."""

from __future__ import annotations

from rest_framework import serializers


class CatalogModelSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    input_usd_per_mtok = serializers.FloatField(allow_null=True)
    output_usd_per_mtok = serializers.FloatField(allow_null=True)
    context_length = serializers.IntegerField(allow_null=True)
    max_output_tokens = serializers.IntegerField(allow_null=True)
    capabilities = serializers.ListField(child=serializers.CharField())
    eu_hosted = serializers.BooleanField()
    recommended = serializers.BooleanField()
    tier = serializers.CharField()


class ProviderGroupSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    models = CatalogModelSerializer(many=True)


class ModelListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    providers = ProviderGroupSerializer(many=True)


class CredentialSerializer(serializers.Serializer):
    """A credential as read: masks only. Endpoint fields appear for endpoint kinds."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.CharField()
    name = serializers.CharField()
    api_key_masked = serializers.CharField(allow_null=True, read_only=True)
    base_url = serializers.CharField(allow_null=True)
    deployment = serializers.CharField(allow_null=True, required=False)
    api_version = serializers.CharField(allow_null=True, required=False)
    region = serializers.CharField(allow_null=True, required=False)
    access_key_id = serializers.CharField(allow_null=True, required=False)
    eu_hosted = serializers.BooleanField(required=False)
    input_usd_per_mtok = serializers.FloatField(required=False)
    output_usd_per_mtok = serializers.FloatField(required=False)
    created_at = serializers.DateTimeField(read_only=True)
    rotated_at = serializers.DateTimeField(allow_null=True, read_only=True)
    last_verified_at = serializers.DateTimeField(allow_null=True, read_only=True)


class CredentialWriteSerializer(serializers.Serializer):
    """Create or change a credential; secrets are write-only and kept when left out of a change."""

    kind = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    api_key = serializers.CharField(required=False, write_only=True)
    base_url = serializers.CharField(required=False)
    deployment = serializers.CharField(required=False)
    api_version = serializers.CharField(required=False)
    region = serializers.CharField(required=False)
    access_key_id = serializers.CharField(required=False)
    secret_access_key = serializers.CharField(required=False, write_only=True)
    headers = serializers.DictField(child=serializers.CharField(), required=False, write_only=True)
    eu_hosted = serializers.BooleanField(required=False)
    input_usd_per_mtok = serializers.FloatField(required=False)
    output_usd_per_mtok = serializers.FloatField(required=False)


class CustomEndpointSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["openai_compatible", "azure_openai", "bedrock", "ollama"])
    base_url = serializers.CharField(required=False)
    api_key = serializers.CharField(required=False, write_only=True)
    deployment = serializers.CharField(required=False)
    api_version = serializers.CharField(required=False)
    region = serializers.CharField(required=False)
    access_key_id = serializers.CharField(required=False)
    secret_access_key = serializers.CharField(required=False, write_only=True)
    headers = serializers.DictField(child=serializers.CharField(), required=False, write_only=True)
    eu_hosted = serializers.BooleanField(required=False)
    input_usd_per_mtok = serializers.FloatField(required=False)
    output_usd_per_mtok = serializers.FloatField(required=False)


class CustomEndpointReadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    name = serializers.CharField()
    base_url = serializers.CharField(allow_null=True)
    deployment = serializers.CharField(allow_null=True)
    api_version = serializers.CharField(allow_null=True)
    region = serializers.CharField(allow_null=True)
    access_key_id = serializers.CharField(allow_null=True)
    api_key_masked = serializers.CharField(allow_null=True)
    eu_hosted = serializers.BooleanField()
    input_usd_per_mtok = serializers.FloatField()
    output_usd_per_mtok = serializers.FloatField()


class PreferencesWriteSerializer(serializers.Serializer):
    """Fields left out keep their current value."""

    mode = serializers.ChoiceField(choices=["platform", "byok", "custom"], required=False)
    model = serializers.CharField(required=False)
    api_key = serializers.CharField(
        required=False,
        write_only=True,
        help_text="BYOK: the provider's (or OpenRouter's) key; stored encrypted.",
    )
    api_key_provider = serializers.CharField(
        required=False, help_text="Whose key api_key is (default: inferred)."
    )
    custom_endpoint = CustomEndpointSerializer(required=False)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    max_tokens = serializers.IntegerField(required=False, min_value=100, max_value=128000)
    eu_only = serializers.BooleanField(required=False)
    fallbacks = serializers.ListField(child=serializers.CharField(), required=False)


class CredentialRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    name = serializers.CharField()
    api_key_masked = serializers.CharField(allow_null=True)


class PreferencesSerializer(serializers.Serializer):
    agent = serializers.CharField(allow_null=True)
    saved = serializers.BooleanField()
    inherited = serializers.BooleanField()
    mode = serializers.CharField()
    model = serializers.CharField()
    temperature = serializers.FloatField()
    max_tokens = serializers.IntegerField()
    eu_only = serializers.BooleanField()
    tenant_eu_only = serializers.BooleanField()
    fallbacks = serializers.ListField(child=serializers.CharField())
    api_key_masked = serializers.CharField(allow_null=True)
    credential = CredentialRefSerializer(allow_null=True)
    custom_endpoint = CustomEndpointReadSerializer(allow_null=True)
    model_info = CatalogModelSerializer(allow_null=True)
    platform_mode_available = serializers.BooleanField()
    platform_mode_reason = serializers.CharField()
    updated_at = serializers.DateTimeField(allow_null=True)


class RouteTargetSerializer(serializers.Serializer):
    model = serializers.CharField()
    credential = serializers.IntegerField(
        required=False, allow_null=True, help_text="Credential id (or name)"
    )
    credential_name = serializers.CharField(read_only=True, allow_null=True)
    weight = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    params = serializers.DictField(required=False, help_text="temperature, max_tokens")


class RouteSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField()
    description = serializers.CharField(required=False, allow_blank=True)
    model = serializers.CharField(read_only=True, help_text="What to send as `model`: route:NAME")
    targets = RouteTargetSerializer(many=True)
    weighted = serializers.BooleanField(read_only=True)
    cache_ttl_seconds = serializers.IntegerField(required=False, allow_null=True)
    eu_only = serializers.BooleanField(required=False)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class RouteImportResultSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())
    deleted = serializers.ListField(child=serializers.CharField())


class ConnectionErrorSerializer(serializers.Serializer):
    kind = serializers.CharField()
    message = serializers.CharField()
    hint = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField(), required=False)


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.IntegerField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    error = ConnectionErrorSerializer(allow_null=True)


class OllamaModelsSerializer(serializers.Serializer):
    base_url = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField())
