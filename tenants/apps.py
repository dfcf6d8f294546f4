"""Tenants app: organisations, people, agents, API keys, scoping and the audit log."""

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, schema  # noqa: F401  (register the deploy checks and the OpenAPI auth extensions)
