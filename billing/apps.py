"""Billing app: plans, subscriptions, TCU caps and rate limits, Stripe sync and reconciliation."""

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals

        signals.connect()
