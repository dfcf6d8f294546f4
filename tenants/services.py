"""Writes on tenants, memberships, invitations and agents; each validates, writes and audits in one place."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from .allowlist import parse_allow_list
from .audit import SYSTEM, Actor, audit_record
from .keys import invalidate_key_cache
from .models import Agent, ApiKey, Invitation, Membership, Tenant, User, slug_validator
from .roles import Perm, Role, invite_refusal, removal_refusal, role_change_refusal, role_has

INVITE_SALT = "tenants.invitation"


# --- access: the same 404 for missing and for another tenant's ---------------------------


def access_agent(*, tenant: Tenant, slug_or_id: str | int) -> Agent:
    qs = Agent.objects.for_tenant(tenant)
    value = str(slug_or_id)
    if "\x00" in value:  # no slug holds one, and PostgreSQL refuses it in a query
        raise Http404("No such agent.")
    agent = qs.filter(slug=value).first()
    if (
        agent is None and value.isascii() and value.isdigit() and len(value) <= 18
    ):  # an id (not "²", nor 5,000 digits)
        agent = qs.filter(id=int(value)).first()
    if agent is None:
        raise Http404("No such agent.")
    return agent


def access_apikey(*, tenant: Tenant, key_id: str | int) -> ApiKey:
    try:
        return ApiKey.objects.for_tenant(tenant).get(id=int(key_id))
    except (ApiKey.DoesNotExist, ValueError, TypeError):
        raise Http404("No such key.") from None


# --- tenants and users ------------------------------------------------------------------


def tenant_create(
    *, slug: str, name: str, owner: User, actor: Actor = SYSTEM, eu_only: bool = False
) -> Tenant:
    slug = (slug or "").strip().lower()
    if slug_errors := _slug_errors(slug):
        raise ValidationError({"slug": slug_errors})
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(slug=slug, name=(name or slug).strip()[:150], eu_only=eu_only)
            Membership.objects.for_tenant(tenant).create(user=owner, role=Role.OWNER)
            audit_record(
                tenant=tenant,
                actor=actor,
                action="tenant.create",
                obj=tenant,
                changes={"slug": slug, "owner": owner.email},
            )
    except IntegrityError:
        raise ValidationError({"slug": [f"The workspace “{slug}” already exists; choose another."]}) from None
    return tenant


def _user_errors(email: str, password: str, name: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not email or "@" not in email:
        errors["email"] = ["Enter a valid e-mail address."]
    elif User.objects.filter(email=email).exists():
        errors["email"] = ["An account with this e-mail already exists; log in instead."]
    try:
        validate_password(password, User(email=email, name=name))
    except ValidationError as exc:
        errors["password"] = list(exc.messages)
    return errors


def _slug_errors(slug: str) -> list[str]:
    try:
        slug_validator(slug)
    except ValidationError as exc:
        return list(exc.messages)
    if Tenant.objects.filter(slug=slug).exists():
        return [f"The workspace “{slug}” already exists; choose another."]
    return []


def slug_suggestion(name: str) -> str:
    """A workspace id from its name, accents dropped: "Ünïcode Café & Co" → "unicode-cafe-co" (the sign-up page's
    script suggests the same as the name is typed)."""
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:50].strip("-")


def signup_errors(*, email: str, password: str, name: str, tenant_slug: str) -> dict[str, list[str]]:
    """Everything `signup` would refuse about these values, so a form shows every problem after one submit."""
    errors = _user_errors((email or "").strip().lower(), password, name)
    if slug_errors := _slug_errors((tenant_slug or "").strip().lower()):
        errors["tenant_slug"] = slug_errors
    return errors


def user_create(*, email: str, password: str, name: str = "") -> User:
    email = (email or "").strip().lower()
    errors = _user_errors(email, password, name)
    if errors:
        raise ValidationError(errors)
    return User.objects.create_user(email=email, password=password, name=name)


def signup(
    *, email: str, password: str, name: str, tenant_name: str, tenant_slug: str
) -> tuple[User, Tenant]:
    """Create the user, the tenant and the owner membership, all or nothing."""
    email = (email or "").strip().lower()
    slug = (tenant_slug or "").strip().lower()
    if errors := signup_errors(email=email, password=password, name=name, tenant_slug=slug):
        raise ValidationError(errors)
    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password, name=name)
        try:
            tenant = tenant_create(slug=slug, name=tenant_name, owner=user, actor=Actor(user=user))
        except ValidationError as exc:
            raise ValidationError({"tenant_slug": exc.message_dict.get("slug", exc.messages)}) from None
    return user, tenant


def user_tenants(user: User) -> list[Tenant]:
    return list(
        Tenant.objects.filter(
            id__in=Membership.objects.unscoped().filter(user=user).values("tenant_id"), is_active=True
        )
    )


def membership_for(*, user: User, tenant: Tenant) -> Membership | None:
    return Membership.objects.for_tenant(tenant).filter(user=user).select_related("tenant").first()


# --- members ------------------------------------------------------------------------------


def access_membership(*, tenant: Tenant, membership_id: str | int) -> Membership:
    try:
        return Membership.objects.for_tenant(tenant).select_related("user").get(id=int(membership_id))
    except (Membership.DoesNotExist, ValueError, TypeError):
        raise Http404("No such member.") from None


def _lock_members(tenant: Tenant, actor: Actor, *membership_ids: int) -> tuple[list[Membership], str | None]:
    """Lock the tenant's owner memberships, then the named ones and the actor's own (always in that order,
    each by id, so two changes never deadlock); return the owners and the actor's role as of now.

    Every owner-count check runs after this inside the same transaction: a concurrent change to an owner
    waits here and then sees the committed roles, so two owners demoting each other cannot both succeed.
    """
    members = Membership.objects.for_tenant(tenant).select_for_update()
    owners = list(members.filter(role=Role.OWNER).order_by("id"))
    wanted = Q(id__in=[i for i in membership_ids if i not in {o.id for o in owners}])
    if actor.user is not None:
        wanted |= Q(user_id=actor.user.pk)
    others = list(members.filter(wanted).order_by("id"))
    if actor.user is not None:
        mine = next((m for m in [*owners, *others] if m.user_id == actor.user.pk), None)
        actor_role = mine.role if mine is not None else None
    elif actor.api_key is not None:
        actor_role = None  # API keys never manage members
    else:
        actor_role = Role.OWNER  # the system: platform admins and management commands
    return owners, actor_role


def actor_role(*, tenant: Tenant, actor: Actor) -> str | None:
    """The actor's role in the tenant as stored now (the system acts as an owner; API keys have none)."""
    if actor.user is not None:
        return (
            Membership.objects.for_tenant(tenant)
            .filter(user=actor.user)
            .values_list("role", flat=True)
            .first()
        )
    return None if actor.api_key is not None else Role.OWNER


def _locked(tenant: Tenant, membership_id: int) -> Membership:
    try:
        return Membership.objects.for_tenant(tenant).select_related("user").get(id=membership_id)
    except Membership.DoesNotExist:
        raise Http404("No such member.") from None


def membership_change_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    """Change a member's role; PermissionDenied when the actor's own role does not allow it."""
    if role not in Role.values:
        raise ValidationError({"role": [f"Choose one of {', '.join(Role.values)}."]})
    tenant = membership.tenant
    with transaction.atomic():
        owners, actor_role = _lock_members(tenant, actor, membership.id)
        locked = _locked(tenant, membership.id)
        is_self = actor.user is not None and locked.user_id == actor.user.pk
        if refusal := role_change_refusal(
            actor_role=actor_role, is_self=is_self, current=locked.role, new=role
        ):
            raise PermissionDenied(refusal)
        if locked.role == Role.OWNER and role != Role.OWNER and len(owners) <= 1:
            raise ValidationError(
                {"role": ["A workspace needs at least one owner; make someone else owner first."]}
            )
        old = locked.role
        if old != role:
            locked.role = role
            locked.save(update_fields=["role"])
            audit_record(
                tenant=tenant,
                actor=actor,
                action="member.role",
                obj=locked,
                object_repr=locked.user.email,
                changes={"role": [old, role]},
            )
    return locked


def membership_remove(*, membership: Membership, actor: Actor) -> None:
    """Remove a member; PermissionDenied when the actor's own role does not allow it."""
    tenant = membership.tenant
    with transaction.atomic():
        owners, actor_role = _lock_members(tenant, actor, membership.id)
        locked = _locked(tenant, membership.id)
        if refusal := removal_refusal(actor_role=actor_role, target=locked.role):
            raise PermissionDenied(refusal)
        if locked.role == Role.OWNER and len(owners) <= 1:
            raise ValidationError({"role": ["The last owner cannot be removed."]})
        audit_record(
            tenant=tenant,
            actor=actor,
            action="member.remove",
            obj=locked,
            object_repr=locked.user.email,
            changes={"email": locked.user.email},
        )
        locked.delete()


# --- invitations -----------------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"i": invitation.id, "t": invitation.tenant_id}, salt=INVITE_SALT)


def access_invitation(*, tenant: Tenant, invitation_id: str | int) -> Invitation:
    try:
        return Invitation.objects.for_tenant(tenant).select_related("invited_by").get(id=int(invitation_id))
    except (Invitation.DoesNotExist, ValueError, TypeError):
        raise Http404("No such invitation.") from None


def invitations_pending(*, tenant: Tenant):
    """Invitations not yet accepted or revoked, newest first (an expired link can still be resent)."""
    return (
        Invitation.objects.for_tenant(tenant)
        .select_related("invited_by")
        .filter(accepted_at__isnull=True, revoked_at__isnull=True)
    )


def _invitation_link(invitation: Invitation) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("invite_accept", args=[invitation_token(invitation)])


def _invitation_mail(invitation: Invitation, actor: Actor) -> str:
    """E-mail a fresh link (valid INVITE_MAX_AGE_DAYS from now) after commit; return the link."""
    link = _invitation_link(invitation)
    tenant = invitation.tenant
    inviter = actor.user.email if actor.user else "An administrator"
    transaction.on_commit(
        lambda: send_mail(
            f"You are invited to {tenant.name} on BYOK Platform",
            f"{inviter} invited you to join {tenant.name} as {invitation.role}.\n\n"
            f"Accept within {settings.INVITE_MAX_AGE_DAYS} days: {link}\n",
            None,
            [invitation.email],
        )
    )
    return link


def invitation_create(*, tenant: Tenant, email: str, role: str, actor: Actor) -> tuple[Invitation, str]:
    email = (email or "").strip().lower()
    errors: dict[str, list[str]] = {}
    if not email or "@" not in email:
        errors["email"] = ["Enter a valid e-mail address."]
    elif len(email) > Invitation._meta.get_field("email").max_length:  # type: ignore[operator]
        errors["email"] = ["This e-mail address is too long."]
    if role not in Role.values:
        errors["role"] = [f"Choose one of {', '.join(Role.values)}."]
    if "role" not in errors and (
        refusal := invite_refusal(actor_role=actor_role(tenant=tenant, actor=actor), role=role)
    ):
        errors["role"] = [refusal]
    if not errors and Membership.objects.for_tenant(tenant).filter(user__email=email).exists():
        errors["email"] = ["This person is already a member."]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        invitation = Invitation.objects.for_tenant(tenant).create(
            email=email, role=role, invited_by=actor.user
        )
        audit_record(
            tenant=tenant,
            actor=actor,
            action="member.invite",
            obj=invitation,
            object_repr=email,
            changes={"email": email, "role": role},
        )
        link = _invitation_mail(invitation, actor)
    return invitation, link


def _pending_locked(invitation: Invitation) -> Invitation:
    locked = Invitation.objects.for_tenant(invitation.tenant_id).select_for_update().get(id=invitation.id)
    if locked.accepted_at:
        raise ValidationError({"invitation": ["This invitation has already been accepted."]})
    if locked.revoked_at:
        raise ValidationError({"invitation": ["This invitation was revoked."]})
    return locked


def invitation_resend(*, invitation: Invitation, actor: Actor) -> tuple[Invitation, str]:
    """Send a pending invitation again with a fresh link; only someone who may invite to its role can."""
    tenant = invitation.tenant
    if refusal := invite_refusal(actor_role=actor_role(tenant=tenant, actor=actor), role=invitation.role):
        raise PermissionDenied(refusal)
    with transaction.atomic():
        locked = _pending_locked(invitation)
        audit_record(
            tenant=tenant,
            actor=actor,
            action="member.invite.resend",
            obj=locked,
            object_repr=locked.email,
            changes={"email": locked.email, "role": locked.role},
        )
        link = _invitation_mail(locked, actor)
    return locked, link


def invitation_revoke(*, invitation: Invitation, actor: Actor) -> Invitation:
    """Revoke a pending invitation: its links stop working at once. Owners and admins may revoke any,
    whoever sent it (revoking grants nothing)."""
    tenant = invitation.tenant
    if not role_has(actor_role(tenant=tenant, actor=actor), Perm.MANAGE_MEMBERS):
        raise PermissionDenied("Only owners and admins manage invitations.")
    with transaction.atomic():
        locked = _pending_locked(invitation)
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action="member.invite.revoke",
            obj=locked,
            object_repr=locked.email,
            changes={"email": locked.email, "role": locked.role},
        )
    return locked


def invitation_from_token(token: str) -> Invitation:
    """The pending invitation a link names; ValidationError with a clear message otherwise."""
    try:
        data = signing.loads(token, salt=INVITE_SALT, max_age=timedelta(days=settings.INVITE_MAX_AGE_DAYS))
    except signing.SignatureExpired:
        raise ValidationError("This invitation has expired; ask for a new one.") from None
    except signing.BadSignature:
        raise ValidationError("This invitation link is not valid.") from None
    invitation = (
        Invitation.objects.unscoped()
        .select_related("tenant")
        .filter(id=data.get("i"), tenant_id=data.get("t"))
        .first()
    )
    if invitation is None or invitation.revoked_at:
        raise ValidationError("This invitation is no longer valid.")
    if invitation.accepted_at:
        raise ValidationError("This invitation has already been used.")
    return invitation


def invitation_accept(*, token: str, user: User) -> Membership:
    invitation = invitation_from_token(token)
    if user.email.lower() != invitation.email.lower():
        raise ValidationError(f"This invitation is for {invitation.email}; log in with that address.")
    with transaction.atomic():
        # Checked again under the row lock: a revoke that commits first wins over this accept.
        try:
            invitation = _pending_locked(invitation)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["invitation"]) from None
        membership, _ = Membership.objects.for_tenant(invitation.tenant).get_or_create(
            user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
        audit_record(
            tenant=invitation.tenant,
            actor=Actor(user=user),
            action="member.join",
            obj=membership,
            object_repr=user.email,
            changes={"role": membership.role},
        )
    return membership


# --- agents ------------------------------------------------------------------------------------


def _agent_name_taken(tenant: Tenant, name: str, *, exclude: int | None = None) -> bool:
    same = Agent.objects.for_tenant(tenant).filter(name__iexact=name)
    return (same.exclude(id=exclude) if exclude is not None else same).exists()


def _agent_name_error(name: str) -> list[str]:
    return [f"An agent named “{name}” already exists in this workspace; choose another name."]


def agent_create(
    *,
    tenant: Tenant,
    actor: Actor,
    slug: str,
    name: str = "",
    description: str = "",
    allowed_models: object = None,
) -> Agent:
    slug = (slug or "").strip().lower()
    name = (name or slug).strip()[:150]
    errors: dict[str, list[str]] = {}
    try:
        slug_validator(slug)
    except ValidationError as exc:
        errors["slug"] = list(exc.messages)
    allowed: list[str] = []
    try:
        allowed = parse_allow_list(allowed_models)
    except ValueError as exc:
        errors["allowed_models"] = [str(exc)]
    if not errors and Agent.objects.for_tenant(tenant).filter(slug=slug).exists():
        errors["slug"] = [f"An agent “{slug}” already exists in this workspace."]
    if name and _agent_name_taken(tenant, name):
        errors["name"] = _agent_name_error(name)
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            agent = Agent.objects.for_tenant(tenant).create(
                slug=slug, name=name, description=description or "", allowed_models=allowed
            )
            audit_record(
                tenant=tenant,
                actor=actor,
                action="agent.create",
                obj=agent,
                changes={"slug": slug, "name": agent.name, "allowed_models": allowed},
            )
    except IntegrityError:  # a concurrent create won the race for the slug or the name
        if Agent.objects.for_tenant(tenant).filter(slug=slug).exists():
            raise ValidationError(
                {"slug": [f"An agent “{slug}” already exists in this workspace."]}
            ) from None
        raise ValidationError({"name": _agent_name_error(name)}) from None
    return agent


def agent_update(*, agent: Agent, actor: Actor, **fields: object) -> Agent:
    allowed = {"name", "description", "is_active", "allowed_models"}
    if isinstance(fields.get("name"), str):
        fields["name"] = str(fields["name"]).strip()
    if "allowed_models" in fields:
        try:
            fields["allowed_models"] = parse_allow_list(fields["allowed_models"])
        except ValueError as exc:
            raise ValidationError({"allowed_models": [str(exc)]}) from None
    changes = {k: v for k, v in fields.items() if k in allowed and getattr(agent, k) != v}
    if "name" in changes and not str(changes["name"]):
        raise ValidationError({"name": ["The name cannot be empty."]})
    if "name" in changes and _agent_name_taken(agent.tenant, str(changes["name"]), exclude=agent.pk):
        raise ValidationError({"name": _agent_name_error(str(changes["name"]))})
    if changes:
        before = {k: getattr(agent, k) for k in changes}
        try:
            with transaction.atomic():
                for k, v in changes.items():
                    setattr(agent, k, v)
                agent.save(update_fields=list(changes))
                audit_record(
                    tenant=agent.tenant,
                    actor=actor,
                    action="agent.update",
                    obj=agent,
                    changes={k: [before[k], v] for k, v in changes.items()},
                )
        except IntegrityError:
            for k, v in before.items():
                setattr(agent, k, v)
            raise ValidationError({"name": _agent_name_error(str(changes["name"]))}) from None
        if "allowed_models" in changes:
            _forget_agent_keys(agent)
    return agent


def _forget_agent_keys(agent: Agent) -> None:
    """The gateway caches an agent's allow-list with each of its keys: forget them (now and after commit)."""
    keys = list(ApiKey.objects.for_tenant(agent.tenant_id).filter(agent_id=agent.pk))

    def forget() -> None:
        for key in keys:
            invalidate_key_cache(key)

    forget()
    transaction.on_commit(forget)


def agent_delete(*, agent: Agent, actor: Actor) -> None:
    _forget_agent_keys(agent)  # cached with the agent (its id and allow-list); forgotten again after commit
    with transaction.atomic():
        audit_record(tenant=agent.tenant, actor=actor, action="agent.delete", obj=agent)
        agent.delete()
