"""Billing app: plans, subscriptions, TCU caps and rate limits, Stripe sync and reconciliation."""

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing import signals
        from billing.policy import BillingPolicy, on_usage_recorded
        from llm import policy as llm_policy

        signals.connect()
        llm_policy.register(BillingPolicy())
        llm_policy.usage_recorded.connect(on_usage_recorded, dispatch_uid="billing.on_usage_recorded")
