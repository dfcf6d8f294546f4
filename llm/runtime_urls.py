"""URL of the usage API (mounted under /api/)."""

from django.urls import path

from .usage_api import UsageView

urlpatterns = [path("llm/usage", UsageView.as_view(), name="api-llm-usage")]
