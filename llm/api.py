"""Tenant REST API for LLM configuration: catalog, credentials, preferences, routes, connection tests.

Thin: parse, call the service module, render. Validation lives in the services so the pages share it.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from tenants.api import TenantAPIView
from tenants.roles import Perm

from . import catalog
from . import serializers as s


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
