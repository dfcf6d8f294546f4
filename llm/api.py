"""Tenant REST API for LLM configuration: catalog, credentials, preferences, routes, connection tests.

Thin: parse, call the service module, render. Validation lives in the services so the pages share it.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from tenants.api import TenantAPIView
from tenants.roles import Perm

from . import catalog, credentials
from . import serializers as s
from .models import Credential


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
        return Response(catalog.models_listing(filter=request.query_params.get("filter") or None,
                                               tier=request.query_params.get("tier") or None))


def _body(request: Request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["Send a JSON object."]})
    return dict(data)


class CredentialListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG, "POST": Perm.MANAGE_LLM}

    @extend_schema(operation_id="llm_credentials_list", responses=s.CredentialSerializer(many=True))
    def get(self, request: Request) -> Response:
        items = Credential.objects.unscoped().filter(tenant=self.tenant)
        return Response([credentials.credential_json(c) for c in items])

    @extend_schema(operation_id="llm_credentials_create", request=s.CredentialWriteSerializer,
                   responses={201: s.CredentialSerializer})
    def post(self, request: Request) -> Response:
        data = _body(request)
        kind = data.pop("kind", None)
        if not kind:
            return Response({"kind": ["Choose the provider or endpoint kind."]}, status=status.HTTP_400_BAD_REQUEST)
        credential = credentials.credential_create(tenant=self.tenant, actor=self.actor, kind=str(kind), data=data)
        return Response(credentials.credential_json(credential), status=status.HTTP_201_CREATED)


class CredentialDetailView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_CONFIG, "PATCH": Perm.MANAGE_LLM, "PUT": Perm.MANAGE_LLM,
                      "DELETE": Perm.MANAGE_LLM}

    @extend_schema(operation_id="llm_credentials_retrieve", responses=s.CredentialSerializer)
    def get(self, request: Request, credential_id: int) -> Response:
        credential = credentials.access_credential(tenant=self.tenant, credential_id=credential_id)
        return Response(credentials.credential_json(credential))

    @extend_schema(operation_id="llm_credentials_update", request=s.CredentialWriteSerializer,
                   responses=s.CredentialSerializer)
    def patch(self, request: Request, credential_id: int) -> Response:
        credential = credentials.access_credential(tenant=self.tenant, credential_id=credential_id)
        credential = credentials.credential_update(credential=credential, actor=self.actor, data=_body(request))
        return Response(credentials.credential_json(credential))

    @extend_schema(operation_id="llm_credentials_replace", request=s.CredentialWriteSerializer,
                   responses=s.CredentialSerializer)
    def put(self, request: Request, credential_id: int) -> Response:
        return self.patch(request, credential_id)

    @extend_schema(operation_id="llm_credentials_destroy", responses={204: None})
    def delete(self, request: Request, credential_id: int) -> Response:
        credential = credentials.access_credential(tenant=self.tenant, credential_id=credential_id)
        credentials.credential_delete(credential=credential, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
