"""Page URLs of the billing app."""

from django.urls import path

from billing import pages

urlpatterns = [
    path("billing/", pages.billing, name="billing"),
    path("billing/plan", pages.change_plan, name="billing_change_plan"),
    path("billing/portal", pages.payment_portal, name="billing_portal"),
    path("notifications/", pages.notifications, name="notifications"),
]
