"""Tenant REST API for agents, API keys and the audit log (thin: parse, call a service, render)."""

from __future__ import annotations

from typing import cast

from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.http import TenantRequest

from . import keys as key_service
from . import services, vocabulary
from .audit import Actor
from .models import Agent, ApiKey, AuditEvent, Tenant
from .roles import Perm
from .validators import MAX_TCU


class TenantAPIView(APIView):
    """Base for tenant endpoints: `self.tenant` and `self.actor` from the authenticated request."""

    required_perms: dict[str, str] = {}

    @property
    def tenant(self) -> Tenant:
        return cast(TenantRequest, self.request._request).tenant

    @property
    def actor(self) -> Actor:
        return Actor.from_request(self.request._request)


# --- agents ----------------------------------------------------------------------------------


ALLOWED_MODELS_HELP = (
    "Models and routes this may call: exact ids (openai:gpt-5-mini), provider patterns (openai:*), routes "
    "(route:support, route:*) or default; anything else is refused with 403. Empty = every model."
)


def _allowed_models_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(allow_blank=True), required=False, help_text=ALLOWED_MODELS_HELP
    )


class AgentSerializer(serializers.ModelSerializer):
    allowed_models = _allowed_models_field()

    class Meta:
        model = Agent
        fields = ["id", "slug", "name", "description", "is_active", "allowed_models", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"name": {"required": False}, "slug": {"validators": []}}


class AgentListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG, "POST": Perm.MANAGE_AGENTS}

    @extend_schema(responses=AgentSerializer(many=True))
    def get(self, request: Request) -> Response:
        agents = Agent.objects.for_tenant(self.tenant)
        return Response(AgentSerializer(agents, many=True).data)

    @extend_schema(request=AgentSerializer, responses={201: AgentSerializer})
    def post(self, request: Request) -> Response:
        ser = AgentSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        agent = services.agent_create(
            tenant=self.tenant,
            actor=self.actor,
            slug=ser.validated_data["slug"],
            name=ser.validated_data.get("name", ""),
            description=ser.validated_data.get("description", ""),
            allowed_models=ser.validated_data.get("allowed_models"),
        )
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(TenantAPIView):
    required_perms = {
        "GET": Perm.VIEW_CONFIG,
        "PATCH": Perm.MANAGE_AGENTS,
        "PUT": Perm.MANAGE_AGENTS,
        "DELETE": Perm.MANAGE_AGENTS,
    }

    @extend_schema(responses=AgentSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(AgentSerializer(services.access_agent(tenant=self.tenant, slug_or_id=slug)).data)

    @extend_schema(request=AgentSerializer, responses=AgentSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        agent = services.access_agent(tenant=self.tenant, slug_or_id=slug)
        ser = AgentSerializer(agent, data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        editable = {"name", "description", "is_active", "allowed_models"}
        fields = {k: v for k, v in ser.validated_data.items() if k in editable}
        agent = services.agent_update(agent=agent, actor=self.actor, **fields)
        return Response(AgentSerializer(agent).data)

    put = patch

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str) -> Response:
        services.agent_delete(
            agent=services.access_agent(tenant=self.tenant, slug_or_id=slug), actor=self.actor
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API keys ----------------------------------------------------------------------------------


class ApiKeySerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    masked = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "last4",
            "masked",
            "scopes",
            "agent",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "spend_limit_tcu",
            "allowed_models",
            "rotated_at",
            "previous_expires_at",
            "is_active",
            "created_at",
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.CharField(), required=False)
    agent = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    spend_limit_tcu = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_TCU
    )
    allowed_models = _allowed_models_field()


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key; shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyListView(TenantAPIView):
    required_perms = {"GET": Perm.MANAGE_KEYS, "POST": Perm.MANAGE_KEYS}

    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.for_tenant(self.tenant).select_related("agent")
        return Response(ApiKeySerializer(keys, many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def post(self, request: Request) -> Response:
        ser = ApiKeyCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        agent = None
        if data.get("agent"):
            try:
                agent = services.access_agent(tenant=self.tenant, slug_or_id=data["agent"])
            except Http404:
                return Response({"agent": ["No such agent."]}, status=status.HTTP_400_BAD_REQUEST)
        key, raw = key_service.apikey_create(
            tenant=self.tenant,
            actor=self.actor,
            name=data["name"],
            scopes=data.get("scopes") or ["gateway"],
            agent=agent,
            expires_at=data.get("expires_at"),
            spend_limit_tcu=data.get("spend_limit_tcu"),
            allowed_models=data.get("allowed_models"),
        )
        body = ApiKeySerializer(key).data
        body["key"] = raw
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyUpdateSerializer(serializers.Serializer):
    spend_limit_tcu = serializers.IntegerField(
        allow_null=True,
        min_value=0,
        max_value=MAX_TCU,
        required=False,
        help_text="The key's monthly TCU limit over every call made with it; null = none",
    )
    allowed_models = _allowed_models_field()


class ApiKeyDetailView(TenantAPIView):
    required_perms = {"GET": Perm.MANAGE_KEYS, "PATCH": Perm.MANAGE_KEYS, "DELETE": Perm.MANAGE_KEYS}

    @extend_schema(responses=ApiKeySerializer)
    def get(self, request: Request, key_id: int) -> Response:
        return Response(ApiKeySerializer(services.access_apikey(tenant=self.tenant, key_id=key_id)).data)

    @extend_schema(request=ApiKeyUpdateSerializer, responses=ApiKeySerializer)
    def patch(self, request: Request, key_id: int) -> Response:
        key = services.access_apikey(tenant=self.tenant, key_id=key_id)
        data = request.data if isinstance(request.data, dict) else {}
        unknown = set(data) - {"spend_limit_tcu", "allowed_models"}
        if unknown:
            return Response({name: ["Unknown field."] for name in sorted(unknown)}, status=400)
        if not data:
            return Response(
                {"spend_limit_tcu": ["Send spend_limit_tcu (null = no limit) or allowed_models."]}, status=400
            )
        ser = ApiKeyUpdateSerializer(data=data)
        ser.is_valid(raise_exception=True)
        with transaction.atomic():
            if "allowed_models" in ser.validated_data:
                key = key_service.apikey_set_allowed_models(
                    key=key, actor=self.actor, allowed_models=ser.validated_data["allowed_models"]
                )
            if "spend_limit_tcu" in data:
                key = key_service.apikey_set_spend_limit(
                    key=key, actor=self.actor, spend_limit_tcu=ser.validated_data["spend_limit_tcu"]
                )
        return Response(ApiKeySerializer(key).data)

    @extend_schema(responses=ApiKeySerializer)
    def delete(self, request: Request, key_id: int) -> Response:
        key = key_service.apikey_revoke(
            key=services.access_apikey(tenant=self.tenant, key_id=key_id), actor=self.actor
        )
        return Response(ApiKeySerializer(key).data)


class ApiKeyRotateSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=key_service.GRACE_MAX_SECONDS,
        default=key_service.GRACE_DEFAULT_SECONDS,
        help_text="How long the old secret keeps working, in seconds (0 = stops now; at most 7 days; "
        "default 24 hours).",
    )


class ApiKeyRotateView(TenantAPIView):
    """A new secret under the same key id; the old one keeps working for the grace period, then stops."""

    required_perms = {"POST": Perm.MANAGE_KEYS}

    @extend_schema(request=ApiKeyRotateSerializer, responses={200: ApiKeyCreatedSerializer})
    def post(self, request: Request, key_id: int) -> Response:
        key = services.access_apikey(tenant=self.tenant, key_id=key_id)
        ser = ApiKeyRotateSerializer(data=request.data if isinstance(request.data, dict) else {})
        ser.is_valid(raise_exception=True)
        key, raw = key_service.apikey_rotate(
            key=key, actor=self.actor, grace_seconds=ser.validated_data["grace_seconds"]
        )
        body = ApiKeySerializer(key).data
        body["key"] = raw
        return Response(body)


# --- audit log ----------------------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_display", read_only=True)
    description = serializers.SerializerMethodField(
        help_text="What happened, in words (e.g. “Created an API key”)"
    )

    def get_description(self, event: AuditEvent) -> str:
        return vocabulary.action_label(event.action)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "description",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "ip",
        ]
        read_only_fields = fields


class AuditListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_AUDIT}

    @extend_schema(
        parameters=[
            OpenApiParameter("action", str, description="Action prefix, e.g. `apikey` or `agent.create`"),
            OpenApiParameter("limit", int, description="At most 500; default 100"),
        ],
        responses=AuditEventSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        events = AuditEvent.objects.for_tenant(self.tenant).select_related("actor_user", "actor_key")
        if action := request.query_params.get("action"):
            if "\x00" in action:
                return Response(
                    {"action": ["Null characters are not allowed."]}, status=status.HTTP_400_BAD_REQUEST
                )
            events = events.filter(action__startswith=action)
        try:
            limit = max(1, min(int(request.query_params.get("limit", 100)), 500))
        except ValueError:
            return Response({"limit": ["Must be a whole number."]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(AuditEventSerializer(events[:limit], many=True).data)
