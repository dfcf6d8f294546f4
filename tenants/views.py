"""Pages of the tenants app: landing, sign-up, log-in, workspace switcher, members and invitations, API keys and
the audit log. Thin: parse the form, call the service, render. The dashboard and the agents' pages show llm's usage
and billing's managed LLM too, so they live in `byok_platform/pages.py`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time
from typing import cast

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from tenants.http import TenantRequest

from . import keys as key_service
from . import services, vocabulary
from .audit import Actor
from .decorators import tenant_required
from .forms import (
    AcceptSignupForm,
    ApiKeyForm,
    AuditFilterForm,
    InviteForm,
    KeyLimitForm,
    KeyRotateForm,
    LoginForm,
    RoleForm,
    SignupForm,
    WorkspaceForm,
    apply_errors,
)
from .middleware import SESSION_KEY
from .models import ApiKey, AuditEvent, Membership, User
from .roles import Perm, Role, invite_refusal, removal_refusal, role_change_refusal, role_has


def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    return render(request, "landing.html")


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("workspace_new")  # signed up already: another workspace is made from the switcher
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                user, tenant = services.signup(
                    email=form.cleaned_data["email"],
                    password=form.cleaned_data["password"],
                    name=form.cleaned_data["name"],
                    tenant_name=form.cleaned_data["tenant_name"],
                    tenant_slug=form.cleaned_data["tenant_slug"],
                )
            except ValidationError as exc:
                apply_errors(form, exc)
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                request.session[SESSION_KEY] = tenant.id
                messages.success(request, f"Welcome! Your workspace “{tenant.name}” is ready.")
                return redirect("dashboard")
        else:
            form.add_service_errors()
        form.ask_password_again()
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


def workspace_new(request: HttpRequest) -> HttpResponse:
    """Someone already signed up creates another workspace (from the switcher), becomes its owner, lands in it."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenant = services.tenant_create(
                slug=form.cleaned_data["tenant_slug"],
                name=form.cleaned_data["tenant_name"],
                owner=cast(User, request.user),
                actor=Actor.from_request(request),
            )
        except ValidationError as exc:
            apply_errors(form, exc, rename={"slug": "tenant_slug", "name": "tenant_name"})
        else:
            request.session[SESSION_KEY] = tenant.id
            messages.success(request, f"Workspace “{tenant.name}” created; you are its owner.")
            return redirect("dashboard")
    in_workspace = getattr(request, "tenant", None) is not None
    return render(
        request,
        "tenants/workspace_new.html",
        {"form": form, "base_template": "base.html" if in_workspace else "public.html"},
        status=400 if form.errors else 200,
    )


class LoginView(auth_views.LoginView):
    authentication_form = LoginForm
    redirect_authenticated_user = True


@require_POST
def switch_tenant(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    tenant_id = request.POST.get("tenant", "")
    if tenant_id == "new":  # the switcher's last choice
        return redirect("workspace_new")
    membership = None
    if (
        tenant_id.isascii() and tenant_id.isdigit() and len(tenant_id) <= 18
    ):  # anything else names no workspace
        membership = (
            Membership.objects.for_tenant(int(tenant_id))
            .filter(user=request.user, tenant__is_active=True)
            .select_related("tenant")
            .first()
        )
    if membership is None:
        messages.error(request, "You are not a member of that workspace.")
        return redirect("dashboard")
    request.session[SESSION_KEY] = membership.tenant_id
    messages.success(request, f"Switched to {membership.tenant.name}.")
    return redirect("dashboard")


# --- members and invitations ------------------------------------------------------------------------

_NEW_INVITE = "tenants.new_invite_link"


@tenant_required()
def members(request: TenantRequest) -> HttpResponse:
    can_manage = role_has(request.role, Perm.MANAGE_MEMBERS)
    form = InviteForm(request.POST or None, inviter_role=request.role)
    invite_link = request.session.pop(_NEW_INVITE, None) if request.method == "GET" else None
    if request.method == "POST":
        if not can_manage:
            return render(request, "403.html", {"needed": Perm.MANAGE_MEMBERS}, status=403)
        if form.is_valid():
            try:
                _, invite_link = services.invitation_create(
                    tenant=request.tenant,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    actor=Actor.from_request(request),
                )
            except ValidationError as exc:
                apply_errors(form, exc)
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                # Shown once on the page this redirects to, so a reload does not send the invitation again.
                request.session[_NEW_INVITE] = invite_link
                return redirect("members")
    memberships = list(
        Membership.objects.for_tenant(request.tenant).select_related("user").order_by("created_at")
    )
    owners = sum(1 for m in memberships if m.role == Role.OWNER)
    rows = []
    for m in memberships:
        is_self = m.user_id == request.user.pk
        # The only owner can be neither removed nor demoted (the service refuses it): offer neither.
        last_owner = m.role == Role.OWNER and owners <= 1
        choices = [
            (value, label)
            for value, label in Role.choices
            if value == m.role
            or role_change_refusal(actor_role=request.role, is_self=is_self, current=m.role, new=value)
            is None
        ]
        rows.append(
            {
                "m": m,
                "last_owner": last_owner,
                "choices": choices if len(choices) > 1 and not last_owner else [],
                "can_remove": not last_owner
                and removal_refusal(actor_role=request.role, target=m.role) is None,
            }
        )
    context = {
        "rows": rows,
        "invitations": [
            {"i": i, "can_resend": invite_refusal(actor_role=request.role, role=i.role) is None}
            for i in services.invitations_pending(tenant=request.tenant)
        ],
        "form": form,
        "can_manage": can_manage,
        "invite_link": invite_link,
        "roles": [(value, label, vocabulary.ROLE_DESCRIPTIONS[value]) for value, label in Role.choices],
    }
    return render(request, "tenants/members.html", context, status=400 if form.errors else 200)


def _refused(request: TenantRequest, exc: PermissionDenied) -> HttpResponse:
    return render(request, "403.html", {"reason": str(exc), "role": request.role}, status=403)


def _members_action(request: TenantRequest, action: Callable[[], object], done: str) -> HttpResponse:
    """Run one change from the members page: a refusal renders 403, a rule it breaks becomes the page's error
    message, success its confirmation; back to the members page either way."""
    try:
        action()
    except PermissionDenied as exc:
        return _refused(request, exc)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, done)
    return redirect("members")


@require_POST
@tenant_required(Perm.MANAGE_MEMBERS)
def member_role(request: TenantRequest, membership_id: int) -> HttpResponse:
    membership = services.access_membership(tenant=request.tenant, membership_id=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
        return redirect("members")
    role = form.cleaned_data["role"]
    return _members_action(
        request,
        lambda: services.membership_change_role(
            membership=membership, role=role, actor=Actor.from_request(request)
        ),
        f"{membership.user.email} is now {vocabulary.role_label(role)}.",
    )


@require_POST
@tenant_required(Perm.MANAGE_MEMBERS)
def member_remove(request: TenantRequest, membership_id: int) -> HttpResponse:
    membership = services.access_membership(tenant=request.tenant, membership_id=membership_id)
    return _members_action(
        request,
        lambda: services.membership_remove(membership=membership, actor=Actor.from_request(request)),
        f"{membership.user.email} was removed.",
    )


@require_POST
@tenant_required(Perm.MANAGE_MEMBERS)
def invitation_resend(request: TenantRequest, invitation_id: int) -> HttpResponse:
    invitation = services.access_invitation(tenant=request.tenant, invitation_id=invitation_id)
    return _members_action(
        request,
        lambda: services.invitation_resend(invitation=invitation, actor=Actor.from_request(request)),
        f"Invitation sent again to {invitation.email}.",
    )


@require_POST
@tenant_required(Perm.MANAGE_MEMBERS)
def invitation_revoke(request: TenantRequest, invitation_id: int) -> HttpResponse:
    invitation = services.access_invitation(tenant=request.tenant, invitation_id=invitation_id)
    return _members_action(
        request,
        lambda: services.invitation_revoke(invitation=invitation, actor=Actor.from_request(request)),
        f"Invitation for {invitation.email} revoked; its link no longer works.",
    )


def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = services.invitation_from_token(token)
    except ValidationError as exc:
        return render(request, "tenants/invite_invalid.html", {"error": " ".join(exc.messages)}, status=410)
    existing = User.objects.filter(email=invitation.email).first()
    form = (
        AcceptSignupForm(request.POST or None)
        if existing is None and not request.user.is_authenticated
        else None
    )
    error = None
    if request.method == "POST":
        user = request.user if request.user.is_authenticated else None
        if user is None and form is not None and form.is_valid():
            try:
                user = services.user_create(
                    email=invitation.email,
                    password=form.cleaned_data["password"],
                    name=form.cleaned_data["name"],
                )
            except ValidationError as exc:
                apply_errors(form, exc)
                user = None
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if user is not None:
            try:
                membership = services.invitation_accept(token=token, user=user)
            except ValidationError as exc:
                error = " ".join(exc.messages)
            else:
                request.session[SESSION_KEY] = membership.tenant_id
                messages.success(
                    request,
                    f"You joined {invitation.tenant.name} as {vocabulary.role_label(membership.role)}.",
                )
                return redirect("dashboard")
    context = {"invitation": invitation, "form": form, "existing": existing, "error": error}
    return render(
        request, "tenants/invite_accept.html", context, status=400 if error or (form and form.errors) else 200
    )


# --- API keys -----------------------------------------------------------------------------------------


# The key just created, kept in the session between the POST and the page it redirects to, and popped there:
# reloading that page neither creates a second key nor shows this one again.
_NEW_KEY = "tenants.new_api_key"


@tenant_required(Perm.MANAGE_KEYS)
def keys(request: TenantRequest) -> HttpResponse:
    if request.method == "POST" and request.POST.get("action") == "limit":
        return _key_limit(request)
    form = ApiKeyForm(request.POST or None, tenant=request.tenant)
    if request.method == "POST" and form.is_valid():
        expires = form.cleaned_data.get("expires_at")
        try:
            key, raw = key_service.apikey_create(
                tenant=request.tenant,
                actor=Actor.from_request(request),
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                agent=form.cleaned_data.get("agent"),
                expires_at=datetime.combine(expires, time.min, tzinfo=timezone.get_fixed_timezone(0))
                if expires
                else None,
                spend_limit_tcu=form.cleaned_data.get("spend_limit_tcu"),
                allowed_models=form.cleaned_data.get("allowed_models"),
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            request.session[_NEW_KEY] = {"tenant": request.tenant.id, "id": key.id, "raw": raw}
            return redirect("keys")
    return _keys_page(request, form=form, created=_pop_new_key(request) if request.method == "GET" else None)


def _pop_new_key(request: TenantRequest) -> dict | None:
    """The key created (or rotated) just before this page, with its plaintext, once; None on any later view."""
    new = request.session.pop(_NEW_KEY, None)
    if not isinstance(new, dict) or new.get("tenant") != request.tenant.id:
        return None
    key = ApiKey.objects.for_tenant(request.tenant).filter(id=int(new.get("id") or 0)).first()
    if key is None:
        return None
    return {"key": key, "raw": new.get("raw", ""), "rotated": bool(new.get("rotated"))}


def _keys_page(
    request: TenantRequest,
    *,
    form: ApiKeyForm,
    created: dict | None = None,
    limit_form: KeyLimitForm | None = None,
    limit_key_id: int | None = None,
) -> HttpResponse:
    response = render(
        request,
        "tenants/keys.html",
        {
            "form": form,
            "created": created,
            "rotate_form": KeyRotateForm(),
            "now_utc": timezone.now(),
            "keys": ApiKey.objects.for_tenant(request.tenant).select_related("agent"),
            # The one key whose limit was refused: its field shows what was sent and why.
            "limit_key_id": limit_key_id,
            "limit_value": limit_form.data.get("spend_limit_tcu", "") if limit_form is not None else "",
            "limit_errors": [e for errors in limit_form.errors.values() for e in errors]
            if limit_form
            else [],
        },
        status=400 if form.errors or (limit_form is not None and limit_form.errors) else 200,
    )
    response["Cache-Control"] = "no-store"
    return response


def _key_limit(request: TenantRequest) -> HttpResponse:
    """Change one key's monthly TCU limit; a bad value is shown next to that key's field."""
    key = services.access_apikey(tenant=request.tenant, key_id=request.POST.get("key", ""))
    limit_form = KeyLimitForm(request.POST)
    if limit_form.is_valid():
        try:
            key_service.apikey_set_spend_limit(
                key=key,
                actor=Actor.from_request(request),
                spend_limit_tcu=limit_form.cleaned_data["spend_limit_tcu"],
            )
        except ValidationError as exc:
            apply_errors(limit_form, exc)
        else:
            messages.success(request, f"Monthly limit of “{key.name}” saved; it applies to the next call.")
            return redirect("keys")
    return _keys_page(
        request, form=ApiKeyForm(tenant=request.tenant), limit_form=limit_form, limit_key_id=key.id
    )


@require_POST
@tenant_required(Perm.MANAGE_KEYS)
def key_rotate(request: TenantRequest, key_id: int) -> HttpResponse:
    """A new secret for the key (the old one keeps working for the chosen grace period); the new one is shown once,
    on the keys page this redirects to (post/redirect/get: a reload neither rotates again nor shows it again)."""
    key = services.access_apikey(tenant=request.tenant, key_id=key_id)
    form = KeyRotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the current secret keeps working.")
        return redirect("keys")
    try:
        key, raw = key_service.apikey_rotate(
            key=key, actor=Actor.from_request(request), grace_seconds=form.cleaned_data["grace_seconds"]
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("keys")
    request.session[_NEW_KEY] = {"tenant": request.tenant.id, "id": key.id, "raw": raw, "rotated": True}
    return redirect("keys")


@require_POST
@tenant_required(Perm.MANAGE_KEYS)
def key_revoke(request: TenantRequest, key_id: int) -> HttpResponse:
    key = services.access_apikey(tenant=request.tenant, key_id=key_id)
    key_service.apikey_revoke(key=key, actor=Actor.from_request(request))
    messages.success(request, f"Key “{key.name}” revoked; it stops working within seconds.")
    return redirect("keys")


# --- audit log ------------------------------------------------------------------------------------------


@tenant_required(Perm.VIEW_AUDIT)
def audit(request: TenantRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    events: QuerySet[AuditEvent] = AuditEvent.objects.for_tenant(request.tenant).select_related(
        "actor_user", "actor_key"
    )
    if form.is_valid():
        events = _audit_filtered(request, events, form.cleaned_data)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "tenants/audit.html", {"form": form, "page": page, "query": query.urlencode()})


def _audit_filtered(request: TenantRequest, events: QuerySet[AuditEvent], data: dict) -> QuerySet[AuditEvent]:
    """Plain words find an event by what happened ("key" finds "Created an API key"), by the object's name, or
    by an action code prefix; the actor filter by e-mail."""
    if words := data.get("q", "").strip():
        known = list(
            AuditEvent.objects.for_tenant(request.tenant)
            .order_by()
            .values_list("action", flat=True)
            .distinct()
        )
        events = events.filter(
            Q(action__in=vocabulary.audit_search_actions(words, known))
            | Q(action__istartswith=words)
            | Q(object_repr__icontains=words)
        )
    if data.get("action"):
        events = events.filter(action__startswith=data["action"])
    if data.get("actor"):
        events = events.filter(actor_user__email__icontains=data["actor"])
    return events


def handler403(request: HttpRequest, exception=None) -> HttpResponse:
    return render(request, "403.html", status=403)


def handler404(request: HttpRequest, exception=None) -> HttpResponse:
    return render(request, "404.html", status=404)
