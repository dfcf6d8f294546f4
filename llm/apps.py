"""LLM app: catalog, credentials, routes, the router and provider adapters, the gateway, usage."""

from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: these modules import models, which exist only once the app registry is ready.
        from llm import (  # app registry: models load first
            signals,
            tasks,  # noqa: F401  (registers the Celery tasks that the runtime enqueues by name)
        )

        signals.connect()
