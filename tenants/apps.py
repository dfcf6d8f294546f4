"""Tenants app: organisations, people, agents, API keys, scoping and the audit log."""

from django.apps import AppConfig

# The deploy checks register on import; they touch no model, so they need not wait for ready(). The OpenAPI auth
# extensions (tenants.schema) load with the URLconf, not here: a gateway-only process never needs drf-spectacular.
from tenants import checks  # noqa: F401


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"
