"""LLM app: catalog, credentials, routes, the router and provider adapters, the gateway, usage."""

from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM"
    default_auto_field = "django.db.models.BigAutoField"
