"""URLs of the LLM configuration API (mounted under /api/)."""

from django.urls import path

from llm import api

urlpatterns = [
    path("llm/models", api.ModelListView.as_view(), name="llm-models"),
    path("llm/credentials", api.CredentialListView.as_view(), name="llm-credentials"),
    path("llm/credentials/<int:credential_id>", api.CredentialDetailView.as_view(), name="llm-credential"),
    path("llm/preferences", api.PreferencesView.as_view(), name="llm-preferences"),
    path("llm/routes", api.RouteListView.as_view(), name="llm-routes"),
    path("llm/routes/export", api.RouteExportView.as_view(), name="llm-routes-export"),
    path("llm/routes/import", api.RouteImportView.as_view(), name="llm-routes-import"),
    path("llm/routes/<str:route_id>", api.RouteDetailView.as_view(), name="llm-route"),
    path("llm/test-connection", api.ConnectionTestView.as_view(), name="llm-test-connection"),
    path("llm/ollama/models", api.OllamaModelsView.as_view(), name="llm-ollama-models"),
    path("llm/endpoint-models", api.EndpointModelsView.as_view(), name="llm-endpoint-models"),
]
