"""Tenants app: organisations, people, agents, API keys, scoping and the audit log."""

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The OpenAPI auth extensions (tenants.schema) load with the URLconf, not here: a gateway-only process
        # never needs drf-spectacular.
        from . import checks  # noqa: F401  (register the deploy checks)
