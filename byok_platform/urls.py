"""Top-level URLs: pages, the tenant REST API under /api/, admin, health and metrics."""

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from tenants import schema as _schema  # noqa: F401  (the OpenAPI auth extensions, needed only with the schema)

from . import health, metrics_view, pages

# The admin is configured with SimpleAdminConfig: its ModelAdmins register here, when the URLconf first loads, so a
# process that only serves the gateway (/v1 never touches the URLconf) does not import the admin at all.
admin.autodiscover()

api_patterns: list = [
    path("", include("tenants.api_urls")),
    path("", include("llm.runtime.urls")),
    path("", include("llm.api_urls")),
    path("", include("billing.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI from drf-spectacular-sidecar's static files; its page carries one small inline <style>.
    path(
        "docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema")
        ),
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
    path("dashboard/", pages.dashboard, name="dashboard"),
    path("agents/", pages.agents, name="agents"),
    path("agents/<slug:slug>/", pages.agent_detail, name="agent_detail"),
    # Swagger UI carries inline styles of its own.
    path(
        "api-reference/",
        csp_update({"style-src": ["'unsafe-inline'"]})(pages.api_reference),
        name="api_reference",
    ),
    path("", include("tenants.urls")),
]

handler403 = "tenants.views.handler403"
handler404 = "tenants.views.handler404"
