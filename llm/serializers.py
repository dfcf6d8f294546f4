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
