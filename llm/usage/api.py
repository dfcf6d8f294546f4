"""`GET /api/llm/usage`: usage totals and breakdowns for the dashboard and scripts."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from llm.usage.selectors import RANGES, usage_summary
from tenants.api import TenantAPIView
from tenants.roles import Perm
from tenants.services import access_agent

_totals = inline_serializer(
    "UsageTotals",
    {
        "requests": serializers.IntegerField(),
        "errors": serializers.IntegerField(),
        "error_rate": serializers.FloatField(),
        "input_tokens": serializers.IntegerField(),
        "output_tokens": serializers.IntegerField(),
        "cache_read_tokens": serializers.IntegerField(
            help_text="Part of input_tokens read from prompt caches"
        ),
        "cache_write_tokens": serializers.IntegerField(
            help_text="Part of input_tokens written to prompt caches"
        ),
        "reasoning_tokens": serializers.IntegerField(help_text="Part of output_tokens spent reasoning"),
        "cost_usd": serializers.FloatField(),
        "billed_usd": serializers.FloatField(),
        "tcu": serializers.IntegerField(),
        "avg_latency_ms": serializers.FloatField(),
        "p95_latency_ms": serializers.IntegerField(),
    },
)


_tests = inline_serializer(
    "UsageConnectionTests",
    {
        "requests": serializers.IntegerField(),
        "errors": serializers.IntegerField(),
        "cost_usd": serializers.FloatField(),
        "billed_usd": serializers.FloatField(),
        "tcu": serializers.IntegerField(),
    },
)


_baseline = inline_serializer(
    "UsageBaseline",
    {
        "model": serializers.CharField(),
        "name": serializers.CharField(),
        "cost_usd": serializers.FloatField(help_text="What the range's calls would have cost on this model"),
        "saving_usd": serializers.FloatField(
            help_text="That minus what they cost (negative: they cost more)"
        ),
        "saving_pct": serializers.FloatField(),
    },
    allow_null=True,
)


class UsageView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_USAGE}

    @extend_schema(
        parameters=[
            OpenApiParameter("range", str, enum=list(RANGES), default="30d"),
            OpenApiParameter("agent", str, description="Agent slug"),
        ],
        responses=inline_serializer(
            "Usage",
            {
                "range": serializers.CharField(),
                "totals": _totals,
                "tests": _tests,
                "baseline": _baseline,
                "by_model": serializers.ListField(child=serializers.DictField()),
                "by_day": serializers.ListField(child=serializers.DictField()),
                "by_hour": serializers.ListField(
                    child=serializers.DictField(), required=False, help_text="Range 24h only: every hour"
                ),
                "by_agent": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        range_name = request.query_params.get("range", "30d")
        if range_name not in RANGES:
            return Response({"range": [f"Choose one of {', '.join(RANGES)}."]}, status=400)
        agent = None
        if slug := request.query_params.get("agent"):
            agent = access_agent(tenant=self.tenant, slug_or_id=slug)
        return Response(usage_summary(tenant=self.tenant, range_name=range_name, agent=agent))
