"""Top-level URLs: pages, the tenant REST API under /api/, admin, health and metrics."""

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import health, metrics_view

_SWAGGER_CDN = "https://cdn.jsdelivr.net"

api_patterns: list = [
    path("", include("tenants.api_urls")),
    path("", include("llm.runtime.urls")),
    path("", include("llm.api_urls")),
    path("", include("billing.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI comes from its CDN and brings one small <style>; its start-up script is served from this URL.
    path(
        "docs/",
        csp_update(
            {
                "script-src": [_SWAGGER_CDN],
                "style-src": [_SWAGGER_CDN, "'unsafe-inline'"],
                "img-src": [_SWAGGER_CDN],
            }
        )(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("billing/", include("billing.urls")),
    path("", include("llm.page_urls")),
    path("", include("billing.page_urls")),
    path("", include("tenants.urls")),
]

handler403 = "tenants.views.handler403"
handler404 = "tenants.views.handler404"
