"""Pending invitations: owners and admins list, resend and revoke them (page and API); revoked links die."""

import re

import pytest
from django.core import mail
from django.test import Client

from tenants.models import AuditEvent, Invitation, Membership

pytestmark = pytest.mark.django_db
PASSWORD = "a-sturdy-passphrase-42"


def _member(tenant, make_user, role: str) -> Membership:
    return Membership.objects.unscoped().create(
        tenant=tenant, user=make_user(f"{role}@acme.example.com"), role=role
    )


def _login(membership: Membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def _owner(tenant) -> Client:
    return _login(Membership.objects.unscoped().get(tenant=tenant, role="owner"))


def _link(body: str) -> str:
    return re.search(r"(/invite/[^/\s]+/)", body).group(1)


def _invite(client, capture, email="new@example.com", role="member"):
    with capture(execute=True):
        response = client.post(
            "/api/invitations", {"email": email, "role": role}, content_type="application/json"
        )
    return response


def test_owner_lists_resends_and_revokes_on_the_page(tenant, django_capture_on_commit_callbacks):
    owner = _owner(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        owner.post("/members/", {"email": "pat@example.com", "role": "member"})
    invitation = Invitation.objects.unscoped().get(tenant=tenant, email="pat@example.com")
    first_link = _link(mail.outbox[-1].body)
    page = owner.get("/members/").content.decode()
    assert "pat@example.com" in page
    assert f"/members/invitations/{invitation.id}/revoke/" in page
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.post(f"/members/invitations/{invitation.id}/resend/").status_code == 302
    assert len(mail.outbox) == 2
    assert mail.outbox[-1].to == ["pat@example.com"]
    assert owner.post(f"/members/invitations/{invitation.id}/revoke/").status_code == 302
    for link in (first_link, _link(mail.outbox[-1].body)):
        refused = Client().post(link, {"name": "Pat", "password": PASSWORD})
        assert refused.status_code == 410
        assert "no longer valid" in refused.content.decode()
    assert not Membership.objects.unscoped().filter(tenant=tenant, user__email="pat@example.com").exists()
    assert f"/members/invitations/{invitation.id}/revoke/" not in owner.get("/members/").content.decode()
    actions = set(AuditEvent.objects.unscoped().filter(tenant=tenant).values_list("action", flat=True))
    assert {"member.invite", "member.invite.resend", "member.invite.revoke"} <= actions


def test_api_lists_resends_and_revokes(tenant, django_capture_on_commit_callbacks):
    owner = _owner(tenant)
    created = _invite(owner, django_capture_on_commit_callbacks)
    assert created.status_code == 201
    body = created.json()
    assert body["role"] == "member"
    assert body["link"].endswith(_link(mail.outbox[-1].body))
    assert [i["email"] for i in owner.get("/api/invitations").json()] == ["new@example.com"]
    with django_capture_on_commit_callbacks(execute=True):
        resent = owner.post(f"/api/invitations/{body['id']}/resend")
    assert resent.status_code == 200
    assert len(mail.outbox) == 2
    revoked = owner.delete(f"/api/invitations/{body['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert owner.get("/api/invitations").json() == []
    again = owner.post(f"/api/invitations/{body['id']}/resend")
    assert again.status_code == 400
    assert "invitation" in again.json()
    assert Client().get(_link(mail.outbox[-1].body)).status_code == 410


def test_a_removed_inviters_invitation_can_still_be_revoked(
    tenant, make_user, django_capture_on_commit_callbacks
):
    admin = _member(tenant, make_user, "admin")
    _invite(_login(admin), django_capture_on_commit_callbacks, email="friend@example.com", role="admin")
    link = _link(mail.outbox[-1].body)
    owner = _owner(tenant)
    assert owner.post(f"/members/{admin.id}/remove/").status_code == 302
    invitation = Invitation.objects.unscoped().get(tenant=tenant, email="friend@example.com")
    assert owner.delete(f"/api/invitations/{invitation.id}").status_code == 200
    friend = make_user("friend@example.com")
    client = Client()
    client.force_login(friend)
    assert client.post(link).status_code == 410
    assert not Membership.objects.unscoped().filter(tenant=tenant, user=friend).exists()


def test_invitation_above_the_inviters_role_is_a_field_error(
    tenant, make_user, django_capture_on_commit_callbacks
):
    admin = _login(_member(tenant, make_user, "admin"))
    refused = _invite(admin, django_capture_on_commit_callbacks, role="owner")
    assert refused.status_code == 400
    assert "role" in refused.json()
    assert not Invitation.objects.unscoped().filter(tenant=tenant).exists()
    assert not mail.outbox
    assert _invite(admin, django_capture_on_commit_callbacks, role="admin").status_code == 201


def test_admin_may_revoke_but_not_resend_an_owner_invitation(
    tenant, make_user, django_capture_on_commit_callbacks
):
    invitation_id = _invite(_owner(tenant), django_capture_on_commit_callbacks, role="owner").json()["id"]
    admin = _login(_member(tenant, make_user, "admin"))
    assert admin.post(f"/api/invitations/{invitation_id}/resend").status_code == 403
    assert admin.post(f"/members/invitations/{invitation_id}/resend/").status_code == 403
    assert admin.delete(f"/api/invitations/{invitation_id}").status_code == 200


@pytest.mark.parametrize("role", ["member", "billing"])
def test_members_and_billing_cannot_see_or_touch_invitations(
    tenant, make_user, role, django_capture_on_commit_callbacks
):
    invitation_id = _invite(_owner(tenant), django_capture_on_commit_callbacks).json()["id"]
    client = _login(_member(tenant, make_user, role))
    assert client.get("/api/invitations").status_code == 403
    assert client.delete(f"/api/invitations/{invitation_id}").status_code == 403
    assert client.post(f"/members/invitations/{invitation_id}/revoke/").status_code == 403
    assert Invitation.objects.unscoped().get(id=invitation_id).revoked_at is None


def test_api_keys_cannot_manage_invitations(manage_client):
    assert manage_client.get("/api/invitations").status_code == 403
    assert (
        manage_client.post("/api/invitations", {"email": "x@example.com"}, format="json").status_code == 403
    )


def test_another_tenants_invitation_is_404(tenant, other_tenant, django_capture_on_commit_callbacks):
    invitation_id = _invite(_owner(tenant), django_capture_on_commit_callbacks).json()["id"]
    other = _owner(other_tenant)
    assert other.get(f"/api/invitations/{invitation_id}").status_code == 404
    assert other.delete(f"/api/invitations/{invitation_id}").status_code == 404
    assert other.post(f"/api/invitations/{invitation_id}/resend").status_code == 404
    assert other.post(f"/members/invitations/{invitation_id}/revoke/").status_code == 404
    assert other.get("/api/invitations").json() == []
    assert Invitation.objects.unscoped().get(id=invitation_id).revoked_at is None
