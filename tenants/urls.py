"""Page URLs of the tenants app (the dashboard and the agents' pages are routed in `byok_platform/urls.py`)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .throttle import throttled

urlpatterns = [
    path("", views.landing, name="landing"),
    path("signup/", throttled("signup", field="email")(views.signup), name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        throttled("reset", field="email")(auth_views.PasswordResetView.as_view()),
        name="password_reset",
    ),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"
    ),
    path("workspace/switch/", views.switch_tenant, name="switch_tenant"),
    path("workspace/new/", views.workspace_new, name="workspace_new"),
    path("members/", views.members, name="members"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "members/invitations/<int:invitation_id>/resend/", views.invitation_resend, name="invitation_resend"
    ),
    path(
        "members/invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"
    ),
    path("invite/<str:token>/", throttled("invite")(views.invite_accept), name="invite_accept"),
    path("keys/", views.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("keys/<int:key_id>/rotate/", views.key_rotate, name="key_rotate"),
    path("audit/", views.audit, name="audit"),
]
