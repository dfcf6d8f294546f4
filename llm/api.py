"""Tenant REST API for LLM configuration: catalog, credentials, preferences, routes, connection tests.

Thin: validate the body with its serializer (`llm.serializers`, the class each `@extend_schema(request=…)` names),
call the service with the validated data, render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from llm import serializers as s
from llm.calls import connection_test
from llm.calls.listing import routes_with_reach
from llm.calls.resolution import route_problems
from llm.config import catalog, credentials, preferences, routes
from llm.models import Credential, Route
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


class _ValidatingView(TenantAPIView):
    def validated(
        self, serializer_class: type[Serializer], *, instance: Any = None, data: Any = None, **context: Any
    ) -> Any:
        """The body (or `data`) validated by the serializer, with the tenant in its context; a 400 with its field
        errors otherwise."""
        serializer = serializer_class(
            instance,
            data=self.request.data if data is None else data,
            partial=self.request.method == "PATCH",
            context={"request": self.request, "tenant": self.tenant, **context},
        )
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class CredentialListView(_ValidatingView):
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
        credential = credentials.credential_create(
            tenant=self.tenant, actor=self.actor, data=self.validated(s.CredentialWriteSerializer)
        )
        return Response(credentials.credential_json(credential), status=status.HTTP_201_CREATED)


class CredentialDetailView(_ValidatingView):
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
            credential=credential,
            actor=self.actor,
            data=self.validated(s.CredentialWriteSerializer, instance=credential),
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


_AGENT_PARAM = OpenApiParameter("agent", str, description="Agent slug: that agent's own preferences")


class PreferencesView(_ValidatingView):
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
        data = self.validated(s.PreferencesWriteSerializer, agent=agent)
        before = _unreachable_targets(self.tenant) if agent is None else set()
        preferences.preferences_save(tenant=self.tenant, agent=agent, actor=self.actor, data=data)
        # The workspace's settings decide how a route target without a credential is reached: say which targets
        # this change leaves unreachable (calls through their routes fall through to the next target that works).
        after = _unreachable_targets(self.tenant) if agent is None else set()
        warnings = [
            {"route": f"route:{name}", "model": model, "reason": reason}
            for name, model, reason in sorted(after - before)
        ]
        return Response(
            {**preferences.preferences_read(tenant=self.tenant, agent=agent), "route_warnings": warnings}
        )

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


def _unreachable_targets(tenant) -> set[tuple[str, str, str]]:
    """(route name, target model, why) for every route target a workspace call cannot reach now."""
    routes_ = list(Route.objects.for_tenant(tenant))
    names = {r.pk: r.name for r in routes_}
    found = route_problems(tenant.id, routes_) if routes_ else {}
    return {(names[pk], p["model"], p["reason"]) for pk, problems in found.items() for p in problems}


def _route_shown(route: Route) -> dict:
    """A route as the API answers it: with what a workspace call cannot reach now (`listing.routes_with_reach`)."""
    return routes_with_reach(route.tenant_id, [route])[0]


class RouteListView(_ValidatingView):
    required_perms = {"GET": Perm.VIEW_CONFIG, "POST": Perm.MANAGE_LLM}

    @extend_schema(operation_id="llm_routes_list", responses=s.RouteSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(routes_with_reach(self.tenant.id, list(Route.objects.for_tenant(self.tenant))))

    @extend_schema(
        operation_id="llm_routes_create", request=s.RouteSerializer, responses={201: s.RouteSerializer}
    )
    def post(self, request: Request) -> Response:
        route = routes.route_create(
            tenant=self.tenant, actor=self.actor, data=self.validated(s.RouteSerializer)
        )
        return Response(_route_shown(route), status=status.HTTP_201_CREATED)


class RouteDetailView(_ValidatingView):
    required_perms = {
        "GET": Perm.VIEW_CONFIG,
        "PATCH": Perm.MANAGE_LLM,
        "PUT": Perm.MANAGE_LLM,
        "DELETE": Perm.MANAGE_LLM,
    }

    @extend_schema(operation_id="llm_routes_retrieve", responses=s.RouteSerializer)
    def get(self, request: Request, route_id: int) -> Response:
        return Response(_route_shown(routes.access_route(tenant=self.tenant, route_id=route_id)))

    def _update(self, request: Request, route_id: int) -> Response:
        """PATCH keeps the fields it leaves out, PUT resets the optional ones (see `RouteSerializer`)."""
        route = routes.access_route(tenant=self.tenant, route_id=route_id)
        data = self.validated(s.RouteSerializer, instance=route)
        return Response(_route_shown(routes.route_update(route=route, actor=self.actor, data=data)))

    @extend_schema(operation_id="llm_routes_update", request=s.RouteSerializer, responses=s.RouteSerializer)
    def patch(self, request: Request, route_id: int) -> Response:
        return self._update(request, route_id)

    @extend_schema(operation_id="llm_routes_replace", request=s.RouteSerializer, responses=s.RouteSerializer)
    def put(self, request: Request, route_id: int) -> Response:
        return self._update(request, route_id)

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
        parameters=[
            OpenApiParameter(
                "dialect",
                str,
                enum=["routes", "llm_config"],
                description="`llm_config`: the seed's `llm_config:` document instead of `version: 1` routes",
            )
        ],
        responses={
            (200, "application/yaml"): {
                "type": "object",
                "properties": {"version": {"type": "integer"}, "routes": {"type": "array"}},
            }
        },
    )
    def get(self, request: Request) -> HttpResponse:
        if request.query_params.get("dialect") == "llm_config":
            text, name = routes.routes_export_llm_config(tenant=self.tenant), "llm-config"
        else:
            text, name = routes.routes_export(tenant=self.tenant), "routes"
        response = HttpResponse(text, content_type="application/yaml")
        response["Content-Disposition"] = f'attachment; filename="{name}-{self.tenant.slug}.yaml"'
        return response


class RouteImportView(_ValidatingView):
    required_perms = {"POST": Perm.MANAGE_LLM}
    parser_classes = [JSONParser, FormParser, MultiPartParser, PlainTextParser]

    @extend_schema(
        operation_id="llm_routes_import",
        parameters=[OpenApiParameter("replace", bool, description="Delete routes that are not in the YAML")],
        request={
            "application/json": s.RouteImportSerializer,
            "multipart/form-data": s.RouteImportSerializer,
            "application/yaml": str,
        },
        responses=s.RouteImportResultSerializer,
    )
    def post(self, request: Request) -> Response:
        data = request.data
        if isinstance(data, bytes | str):  # the document as the body itself (YAML, or a JSON string)
            data = {"yaml": data}
        elif not isinstance(data, Mapping):
            data = {}  # a JSON body that is no object: no document
        validated = self.validated(s.RouteImportSerializer, data=data)
        replace = request.query_params.get("replace", "").lower() in ("1", "true", "yes")
        return Response(
            routes.routes_import(tenant=self.tenant, actor=self.actor, data=validated, replace=replace)
        )


class ConnectionTestView(_ValidatingView):
    required_perms = {"POST": Perm.MANAGE_LLM}

    @extend_schema(
        operation_id="llm_test_connection",
        parameters=[_AGENT_PARAM],
        request=s.PreferencesWriteSerializer,
        responses=s.ConnectionTestSerializer,
    )
    def post(self, request: Request) -> Response:
        agent = _agent(request, self.tenant)
        unsaved = None  # an empty body tests the saved settings
        if not (isinstance(request.data, Mapping) and not request.data):
            unsaved = self.validated(s.PreferencesWriteSerializer, agent=agent, new_origin="drop")
        result = connection_test.test_connection(
            tenant=self.tenant,
            agent=agent,
            data=unsaved,
            user=getattr(self.actor, "user", None),
            api_key=getattr(self.actor, "api_key", None),
            actor=self.actor,
        )
        return Response(result)


class OllamaModelsView(_ValidatingView):
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
        request=s.OllamaDiscoverySerializer,
        responses=s.OllamaModelsSerializer,
    )
    def post(self, request: Request) -> Response:
        data = self.validated(s.OllamaDiscoverySerializer)
        return self._discover(data.get("base_url") or "", data.get("api_key") or "")

    def _discover(self, base_url: str, api_key: str) -> Response:
        return Response(connection_test.ollama_models(base_url=base_url, api_key=api_key))


class EndpointModelsView(_ValidatingView):
    """Discover models: what an OpenAI-compatible server (GET /v1/models) or an Ollama server (GET /api/tags)
    serves, for the custom endpoint the modal describes."""

    required_perms = {"POST": Perm.MANAGE_LLM}

    @extend_schema(
        operation_id="llm_endpoint_models",
        request=s.EndpointDiscoverySerializer,
        responses=s.EndpointModelsSerializer,
    )
    def post(self, request: Request) -> Response:
        data = self.validated(s.EndpointDiscoverySerializer)
        return Response(
            connection_test.endpoint_models(
                tenant=self.tenant, base_url=data.get("base_url") or "", api_key=data.get("api_key") or ""
            )
        )
