"""Billing URLs outside the REST API: the Stripe webhook (mounted under /billing/)."""

from django.urls import path

from billing.stripe import webhooks

urlpatterns = [
    path("stripe/webhook", webhooks.stripe_webhook, name="stripe-webhook"),
]
