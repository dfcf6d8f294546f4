"""Billing app: plans, subscriptions, TCU caps and rate limits, Stripe sync and reconciliation."""

from django.apps import AppConfig

from llm import policy as llm_policy


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: these modules import models, which exist only once the app registry is ready.
        from billing import (  # app registry: models load first
            signals,
            tasks,  # noqa: F401  (registers the Celery tasks that lower modules enqueue by name)
        )
        from billing.policy import BillingPolicy, on_usage_recorded  # app registry: imports models

        signals.connect()
        llm_policy.register(BillingPolicy())
        llm_policy.usage_recorded.connect(on_usage_recorded, dispatch_uid="billing.on_usage_recorded")
