"""URLs of the LLM configuration API (mounted under /api/)."""

from django.urls import path

from . import api

urlpatterns = [
    path("llm/models", api.ModelListView.as_view(), name="llm-models"),
    path("llm/credentials", api.CredentialListView.as_view(), name="llm-credentials"),
    path("llm/credentials/<int:credential_id>", api.CredentialDetailView.as_view(), name="llm-credential"),
]
