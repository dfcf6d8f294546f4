"""`GET /metrics`: Prometheus text format, for a bearer token or an allowed address."""

from __future__ import annotations

import hmac
import os

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from billing.metrics import collect_platform_margin, collect_tenant_gauges
from llm.limits import budget
from llm.metering import metrics as _gateway_metrics  # noqa: F401  (registers the gateway's metrics)
from llm.metering import queue as metering


class _StateCollector:
    """Gauges read at scrape time: TCU per tenant and cap ratios, the platform's revenue and list cost, open
    circuits, Celery queue depth."""

    def collect(self):
        used = GaugeMetricFamily("byok_tcu_used", "TCU used this period, every mode", labels=["tenant"])
        platform = GaugeMetricFamily(
            "byok_platform_tcu_used",
            "TCU of platform-managed calls this period (what the platform's guardrail counts)",
            labels=["tenant"],
        )
        ratio = GaugeMetricFamily(
            "byok_tcu_cap_ratio",
            "TCU used / the cap that applies (the tenant's own over every call, else the guardrail over "
            "platform-managed calls)",
            labels=["tenant", "level"],
        )
        for gauges in collect_tenant_gauges():
            used.add_metric([gauges.slug], gauges.tcu_used)
            platform.add_metric([gauges.slug], gauges.platform_tcu_used)
            for level, value in gauges.ratios.items():
                ratio.add_metric([gauges.slug, level], value)
        yield used
        yield platform
        yield ratio
        yield from _margin_gauges()
        try:
            client = budget.backend().sync_client()  # Redis, or the embedded default's in-process one
            open_circuits = sum(1 for _ in client.scan_iter(f"{budget.NS}:cb:open:*", count=500))
            pending_events = metering.pending_count()
            dead_events = metering.dead_letter_count()
            celery_depth = client.llen("celery") if settings.REDIS_URL else 0
        except (redis.RedisError, OSError):  # a scrape while Redis is down still answers, with what it knows
            return
        g = GaugeMetricFamily("byok_circuits_open", "Upstream targets whose circuit breaker is open")
        g.add_metric([], open_circuits)
        yield g
        q = GaugeMetricFamily(
            "byok_celery_queue_depth", "Tasks waiting in the Celery queue", labels=["queue"]
        )
        q.add_metric(["celery"], celery_depth)
        yield q
        pending = GaugeMetricFamily("byok_usage_events_pending", "Usage events queued for PostgreSQL")
        pending.add_metric([], pending_events)
        yield pending
        dead = GaugeMetricFamily(
            "byok_usage_events_dead_lettered",
            "Usage events the database refused, kept aside with the reason (see admin)",
        )
        dead.add_metric([], dead_events)
        yield dead


def _margin_gauges():
    """Revenue and list cost of platform-managed LLM this period, per tenant and in total: what the margin alerts
    compare (ops/prometheus/alerts.yml)."""
    margins = collect_platform_margin()
    revenue = GaugeMetricFamily(
        "byok_platform_revenue_usd",
        "Platform revenue this period: managed tiers (prorated), overage, a platform plan's price, markup",
        labels=["tenant"],
    )
    cost = GaugeMetricFamily(
        "byok_platform_cost_usd", "List cost of platform-managed calls this period", labels=["tenant"]
    )
    for m in margins:
        revenue.add_metric([m.slug], float(m.revenue_usd))
        cost.add_metric([m.slug], float(m.cost_usd))
    yield revenue
    yield cost
    total_revenue = GaugeMetricFamily(
        "byok_platform_total_revenue_usd", "Platform revenue this period, every tenant", labels=["source"]
    )
    for source in ("managed", "overage", "plan", "markup"):
        total_revenue.add_metric([source], float(sum(getattr(m, f"{source}_usd") for m in margins)))
    yield total_revenue
    total_cost = GaugeMetricFamily(
        "byok_platform_total_cost_usd", "List cost of platform-managed calls this period, every tenant"
    )
    total_cost.add_metric([], float(sum(m.cost_usd for m in margins)))
    yield total_cost


# A request that came through a proxy carries one of these; its REMOTE_ADDR is then the proxy's (often loopback,
# which the allow-list admits), not the client's: such a request must show the token.
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def _allowed(request: HttpRequest) -> bool:
    """The per-tenant figures (slugs and spend) are for the operator: a bearer METRICS_TOKEN, or a direct connection
    from an address in METRICS_ALLOWED_IPS."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    if any(name in request.headers for name in _PROXY_HEADERS):
        return False
    return request.META.get("REMOTE_ADDR") in settings.METRICS_ALLOWED_IPS


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse(
            "Forbidden: send the metrics token or scrape from an allowed address.\n",
            status=403,
            content_type="text/plain",
        )
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    extra = CollectorRegistry()
    extra.register(_StateCollector())
    body += generate_latest(extra)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
