"""URL patterns of the billing part of the REST API (mounted under /api/)."""

from django.urls import path

from billing import api

urlpatterns = [
    path("billing/caps", api.CapsView.as_view(), name="api-billing-caps"),
    path("billing/summary", api.SummaryView.as_view(), name="api-billing-summary"),
    path("billing/plans", api.PlanListView.as_view(), name="api-billing-plans"),
    path("billing/plan", api.PlanChangeView.as_view(), name="api-billing-plan"),
    path("billing/portal", api.PortalView.as_view(), name="api-billing-portal"),
    path("billing/alert-webhook", api.AlertWebhookView.as_view(), name="api-billing-alert-webhook"),
    path("billing/agents/<slug:slug>/budget", api.AgentBudgetView.as_view(), name="api-billing-agent-budget"),
    path("billing/notifications", api.NotificationListView.as_view(), name="api-billing-notifications"),
    path("agents/<slug:slug>/managed", api.AgentManagedView.as_view(), name="api-agent-managed"),
    path("managed", api.DefaultManagedView.as_view(), name="api-managed"),
    path(
        "billing/notifications/<int:notification_id>",
        api.NotificationDetailView.as_view(),
        name="api-billing-notification",
    ),
]
