"""Tenant REST API for LLM configuration: catalog, credentials, preferences, routes, connection tests.

Thin: parse, call the service module, render. Validation lives in the services so the pages share it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from llm import serializers as s
from llm.calls import connection_test
from llm.config import catalog, credentials, preferences, routes
from llm.models import Credential
from tenants.api import TenantAPIView
from tenants.models import Agent
from tenants.roles import Perm
from tenants.services import access_agent


class PlainTextParser(BaseParser):
    """YAML (or any text) posted as the raw body."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        return stream.read()  # bytes: the view decodes them (a field error when they are not UTF-8)


class ModelListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG}

    @extend_schema(
        operation_id="llm_models_list",
        parameters=[
            OpenApiParameter("filter", str, description="`eu`, `recommended` or `provider:NAME`"),
            OpenApiParameter("tier", str, enum=list(catalog.TIERS)),
        ],
        responses=s.ModelListSerializer,
    )
    def get(self, request: Request) -> Response:
        return Response(
            catalog.models_listing(
                filter=request.query_params.get("filter") or None,
                tier=request.query_params.get("tier") or None,
            )
        )


def _body(request: Request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["Send a JSON object."]})
    return dict(data)


class CredentialListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG, "POST": Perm.MANAGE_LLM}

    @extend_schema(operation_id="llm_credentials_list", responses=s.CredentialSerializer(many=True))
    def get(self, request: Request) -> Response:
        items = Credential.objects.for_tenant(self.tenant)
        return Response([credentials.credential_json(c) for c in items])

    @extend_schema(
        operation_id="llm_credentials_create",
        request=s.CredentialWriteSerializer,
        responses={201: s.CredentialSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _body(request)
        kind = data.pop("kind", None)
        if not kind:
            return Response(
                {"kind": ["Choose the provider or endpoint kind."]}, status=status.HTTP_400_BAD_REQUEST
            )
        credential = credentials.credential_create(
            tenant=self.tenant, actor=self.actor, kind=str(kind), data=data
        )
        return Response(credentials.credential_json(credential), status=status.HTTP_201_CREATED)


class CredentialDetailView(TenantAPIView):
    required_perms = {
        "GET": Perm.VIEW_CONFIG,
        "PATCH": Perm.MANAGE_LLM,
        "PUT": Perm.MANAGE_LLM,
        "DELETE": Perm.MANAGE_LLM,
    }

    @extend_schema(operation_id="llm_credentials_retrieve", responses=s.CredentialSerializer)
    def get(self, request: Request, credential_id: int) -> Response:
        credential = credentials.access_credential(tenant=self.tenant, credential_id=credential_id)
        return Response(credentials.credential_json(credential))

    @extend_schema(
        operation_id="llm_credentials_update",
        request=s.CredentialWriteSerializer,
        responses=s.CredentialSerializer,
    )
    def patch(self, request: Request, credential_id: int) -> Response:
        credential = credentials.access_credential(tenant=self.tenant, credential_id=credential_id)
        credential = credentials.credential_update(
            credential=credential, actor=self.actor, data=_body(request)
        )
        return Response(credentials.credential_json(credential))

    @extend_schema(
        operation_id="llm_credentials_replace",
        request=s.CredentialWriteSerializer,
        responses=s.CredentialSerializer,
    )
    def put(self, request: Request, credential_id: int) -> Response:
        return self.patch(request, credential_id)

    @extend_schema(operation_id="llm_credentials_destroy", responses={204: None})
    def delete(self, request: Request, credential_id: int) -> Response:
        credential = credentials.access_credential(tenant=self.tenant, credential_id=credential_id)
        credentials.credential_delete(credential=credential, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _agent(request: Request, tenant) -> Agent | None:
    slug = request.query_params.get("agent")
    if not slug:
        return None
    return access_agent(tenant=tenant, slug_or_id=slug)


def _invalid(exc: ValidationError) -> Response:
    detail = (
        exc.detail
        if isinstance(exc, credentials.ConfigValidationError)
        else (exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})
    )
    return Response(detail, status=status.HTTP_400_BAD_REQUEST)


_AGENT_PARAM = OpenApiParameter("agent", str, description="Agent slug: that agent's own preferences")


class PreferencesView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG, "POST": Perm.MANAGE_LLM, "DELETE": Perm.MANAGE_LLM}

    @extend_schema(
        operation_id="llm_preferences_retrieve", parameters=[_AGENT_PARAM], responses=s.PreferencesSerializer
    )
    def get(self, request: Request) -> Response:
        agent = _agent(request, self.tenant)
        return Response(preferences.preferences_read(tenant=self.tenant, agent=agent))

    @extend_schema(
        operation_id="llm_preferences_save",
        parameters=[_AGENT_PARAM],
        request=s.PreferencesWriteSerializer,
        responses=s.PreferencesSerializer,
    )
    def post(self, request: Request) -> Response:
        agent = _agent(request, self.tenant)
        try:
            preferences.preferences_save(
                tenant=self.tenant, agent=agent, actor=self.actor, data=_body(request)
            )
        except ValidationError as exc:
            return _invalid(exc)
        return Response(preferences.preferences_read(tenant=self.tenant, agent=agent))

    @extend_schema(
        operation_id="llm_preferences_reset",
        parameters=[_AGENT_PARAM],
        responses={204: None},
        description="An agent's own preferences are dropped; it follows the workspace's again.",
    )
    def delete(self, request: Request) -> Response:
        agent = _agent(request, self.tenant)
        if agent is None:
            return Response(
                {"agent": ["Name the agent whose preferences to drop."]}, status=status.HTTP_400_BAD_REQUEST
            )
        preferences.preferences_delete(tenant=self.tenant, agent=agent, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RouteListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG, "POST": Perm.MANAGE_LLM}

    @extend_schema(operation_id="llm_routes_list", responses=s.RouteSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(routes.routes_list(tenant=self.tenant))

    @extend_schema(
        operation_id="llm_routes_create", request=s.RouteSerializer, responses={201: s.RouteSerializer}
    )
    def post(self, request: Request) -> Response:
        try:
            route = routes.route_create(tenant=self.tenant, actor=self.actor, data=_body(request))
        except ValidationError as exc:
            return _invalid(exc)
        return Response(routes.route_json(route), status=status.HTTP_201_CREATED)


class RouteDetailView(TenantAPIView):
    required_perms = {
        "GET": Perm.VIEW_CONFIG,
        "PATCH": Perm.MANAGE_LLM,
        "PUT": Perm.MANAGE_LLM,
        "DELETE": Perm.MANAGE_LLM,
    }

    @extend_schema(operation_id="llm_routes_retrieve", responses=s.RouteSerializer)
    def get(self, request: Request, route_id: int) -> Response:
        return Response(routes.route_json(routes.access_route(tenant=self.tenant, route_id=route_id)))

    def _update(self, request: Request, route_id: int, partial: bool) -> Response:
        route = routes.access_route(tenant=self.tenant, route_id=route_id)
        try:
            route = routes.route_update(route=route, actor=self.actor, data=_body(request), partial=partial)
        except ValidationError as exc:
            return _invalid(exc)
        return Response(routes.route_json(route))

    @extend_schema(operation_id="llm_routes_update", request=s.RouteSerializer, responses=s.RouteSerializer)
    def patch(self, request: Request, route_id: int) -> Response:
        return self._update(request, route_id, partial=True)

    @extend_schema(operation_id="llm_routes_replace", request=s.RouteSerializer, responses=s.RouteSerializer)
    def put(self, request: Request, route_id: int) -> Response:
        return self._update(request, route_id, partial=False)

    @extend_schema(operation_id="llm_routes_destroy", responses={204: None})
    def delete(self, request: Request, route_id: int) -> Response:
        routes.route_delete(
            route=routes.access_route(tenant=self.tenant, route_id=route_id), actor=self.actor
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RouteExportView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG}

    @extend_schema(
        operation_id="llm_routes_export",
        responses={
            (200, "application/yaml"): {
                "type": "object",
                "properties": {"version": {"type": "integer"}, "routes": {"type": "array"}},
            }
        },
    )
    def get(self, request: Request) -> HttpResponse:
        response = HttpResponse(routes.routes_export(tenant=self.tenant), content_type="application/yaml")
        response["Content-Disposition"] = f'attachment; filename="routes-{self.tenant.slug}.yaml"'
        return response


class RouteImportView(TenantAPIView):
    required_perms = {"POST": Perm.MANAGE_LLM}
    parser_classes = [JSONParser, FormParser, MultiPartParser, PlainTextParser]

    @extend_schema(
        operation_id="llm_routes_import",
        parameters=[OpenApiParameter("replace", bool, description="Delete routes that are not in the YAML")],
        request={
            "application/yaml": str,
            "application/json": {"type": "object", "properties": {"yaml": {"type": "string"}}},
        },
        responses=s.RouteImportResultSerializer,
    )
    def post(self, request: Request) -> Response:
        data = request.data
        replace = request.query_params.get("replace", "").lower() in ("1", "true", "yes")
        try:
            if isinstance(data, bytes):
                text = routes.routes_text(data)
            elif isinstance(data, str):
                text = data
            elif hasattr(data, "get") and "file" in getattr(request, "FILES", {}):
                text = routes.routes_text(request.FILES["file"].read())
            elif hasattr(data, "get"):
                text = data.get("yaml") or ""
                if not isinstance(text, str):
                    return Response(
                        {"yaml": ["Send the routes as YAML text."]}, status=status.HTTP_400_BAD_REQUEST
                    )
            else:
                text = ""
            result = routes.routes_import(tenant=self.tenant, actor=self.actor, text=text, replace=replace)
        except ValidationError as exc:
            return _invalid(exc)
        return Response(result)


class ConnectionTestView(TenantAPIView):
    required_perms = {"POST": Perm.MANAGE_LLM}

    @extend_schema(
        operation_id="llm_test_connection",
        parameters=[_AGENT_PARAM],
        request=s.PreferencesWriteSerializer,
        responses=s.ConnectionTestSerializer,
    )
    def post(self, request: Request) -> Response:
        agent = _agent(request, self.tenant)
        try:
            result = connection_test.test_connection(
                tenant=self.tenant,
                agent=agent,
                data=_body(request),
                user=getattr(self.actor, "user", None),
                api_key=getattr(self.actor, "api_key", None),
                actor=self.actor,
            )
        except ValidationError as exc:
            return _invalid(exc)
        return Response(result)


class OllamaModelsView(TenantAPIView):
    required_perms = {"GET": Perm.MANAGE_LLM, "POST": Perm.MANAGE_LLM}

    @extend_schema(
        operation_id="llm_ollama_models",
        parameters=[
            OpenApiParameter("base_url", str, description="The Ollama server, e.g. http://127.0.0.1:11434")
        ],
        responses=s.OllamaModelsSerializer,
    )
    def get(self, request: Request) -> Response:
        return self._discover(
            request.query_params.get("base_url") or "", request.query_params.get("api_key") or ""
        )

    @extend_schema(
        operation_id="llm_ollama_models_post",
        request=s.OllamaModelsSerializer,
        responses=s.OllamaModelsSerializer,
    )
    def post(self, request: Request) -> Response:
        data = _body(request)
        return self._discover(str(data.get("base_url") or ""), str(data.get("api_key") or ""))

    def _discover(self, base_url: str, api_key: str) -> Response:
        try:
            return Response(connection_test.ollama_models(base_url=base_url, api_key=api_key))
        except ValidationError as exc:
            return _invalid(exc)
