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
