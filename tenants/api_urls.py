"""URL patterns of the tenants part of the REST API (mounted under /api/)."""

from django.urls import path

from . import api, members_api

urlpatterns = [
    path("agents", api.AgentListView.as_view(), name="api-agents"),
    path("agents/<slug:slug>", api.AgentDetailView.as_view(), name="api-agent"),
    path("keys", api.ApiKeyListView.as_view(), name="api-keys"),
    path("keys/<int:key_id>", api.ApiKeyDetailView.as_view(), name="api-key"),
    path("keys/<int:key_id>/rotate", api.ApiKeyRotateView.as_view(), name="api-key-rotate"),
    path("audit", api.AuditListView.as_view(), name="api-audit"),
    path("invitations", members_api.InvitationListView.as_view(), name="api-invitations"),
    path(
        "invitations/<int:invitation_id>", members_api.InvitationDetailView.as_view(), name="api-invitation"
    ),
    path(
        "invitations/<int:invitation_id>/resend",
        members_api.InvitationResendView.as_view(),
        name="api-invitation-resend",
    ),
]
