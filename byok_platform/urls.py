"""Top-level URLs: pages, the tenant REST API under /api/, admin, health and metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import health, metrics_view

api_patterns: list = [
    path("", include("tenants.api_urls")),
    path("", include("llm.runtime_urls")),
    path("", include("llm.api_urls")),
    path("", include("billing.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
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
