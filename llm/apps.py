"""LLM app: catalog, credentials, routes, the router and provider adapters, the gateway, usage."""

from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenants.keys import key_changed

        key_changed.connect(_forget_key, dispatch_uid="llm.gateway_cache.forget_key")


def _forget_key(sender: object, key_hash: str, **kwargs: object) -> None:
    from . import gateway_cache

    gateway_cache.forget_key(key_hash)
