"""Prometheus metrics of the gateway: requests, errors, latency, time to first token, tokens, cost, margin.

With several worker processes set PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) so that
`/metrics` sums every worker and counters survive a worker restart.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

_LAT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "byok_requests", "LLM calls through the router", ["tenant", "mode", "provider", "model", "status"]
)
LATENCY = Histogram(
    "byok_request_latency_seconds",
    "End-to-end latency of LLM calls",
    ["mode", "provider", "model"],
    buckets=_LAT_BUCKETS,
)
TTFT = Histogram(
    "byok_ttft_seconds",
    "Time to first token of streamed calls",
    ["mode", "provider", "model"],
    buckets=_LAT_BUCKETS,
)
TOKENS = Counter("byok_tokens", "Tokens metered", ["tenant", "mode", "direction"])
# Parts of the tokens above (not to be added to them): input read from / written to prompt caches, output spent
# reasoning.
TOKEN_PARTS = Counter(
    "byok_token_parts",
    "Parts of the metered tokens: cache_read and cache_write (input), reasoning (output)",
    ["tenant", "mode", "part"],
)
COST = Counter("byok_cost_usd", "Provider list cost in USD", ["tenant", "mode"])
BILLED = Counter("byok_billed_usd", "Amount billed to tenants in USD", ["tenant", "mode"])
CACHE_HITS = Counter("byok_cache_hits", "Responses served from the response cache", ["tenant"])
FALLBACKS = Counter("byok_fallbacks", "Calls answered by a fallback target", ["provider", "model"])
ALERTS = Counter("byok_alerts_sent", "Cap and usage alerts sent", ["kind"])

_tenant_slugs: dict[int, str] = {}


def tenant_label(tenant_id: int) -> str:
    return _tenant_slugs.get(tenant_id) or str(tenant_id)


def remember_tenant(tenant_id: int, slug: str) -> None:
    """Only tenants that exist get a series (called once a key of theirs authenticated)."""
    if _tenant_slugs.get(tenant_id) != slug:
        _tenant_slugs[tenant_id] = slug


_MODES = {"platform", "byok", "custom"}
_STATUSES = {"ok", "error", "client_closed"}


def model_label(usage: Any) -> tuple[str, str]:
    """(provider, model) as labels: catalog models by name; anything a tenant names (custom endpoints, Ollama
    models it pulled) under one `custom` value, so label sets stay bounded whatever tenants send."""
    if (
        usage.mode not in ("platform", "byok")
        or usage.provider in ("custom", "ollama", "")
        or len(usage.model) > 120
    ):
        return (
            "custom" if usage.mode == "custom" or usage.provider in ("custom", "ollama") else "none"
        ), "custom"
    return usage.provider[:40], usage.model


def observe(usage: Any) -> None:
    tenant = tenant_label(usage.tenant_id)
    mode = usage.mode if usage.mode in _MODES else "none"
    provider, model = model_label(usage)
    status = usage.status if usage.status in _STATUSES else "error"
    REQUESTS.labels(tenant, mode, provider, model, status).inc()
    LATENCY.labels(mode, provider, model).observe(usage.latency_ms / 1000)
    if usage.ttft_ms is not None:
        TTFT.labels(mode, provider, model).observe(usage.ttft_ms / 1000)
    if usage.input_tokens:
        TOKENS.labels(tenant, mode, "input").inc(usage.input_tokens)
    if usage.output_tokens:
        TOKENS.labels(tenant, mode, "output").inc(usage.output_tokens)
    for part, count in (
        ("cache_read", usage.cached_tokens),
        ("cache_write", usage.cache_write_tokens),
        ("reasoning", usage.reasoning_tokens),
    ):
        if count:
            TOKEN_PARTS.labels(tenant, mode, part).inc(count)
    cost = float(usage.cost_usd)
    if cost:
        COST.labels(tenant, mode).inc(cost)
    billed = float(usage.billed_usd)
    if billed:
        BILLED.labels(tenant, mode).inc(billed)
    if usage.cached:
        CACHE_HITS.labels(tenant).inc()
    if usage.fallback_depth:
        FALLBACKS.labels(provider, model).inc()
