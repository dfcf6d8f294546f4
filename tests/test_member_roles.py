"""Who may change whom: only owners touch the owner role, admins manage the rest, nobody raises their own role."""

import pytest
from django.test import Client

from tenants.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def crew(tenant, make_user):
    """The owner, a second owner, an admin, a member and a billing member of `tenant`."""
    made = {"owner": Membership.objects.unscoped().get(tenant=tenant, role="owner")}
    for name, role in [("owner2", "owner"), ("admin", "admin"), ("member", "member"), ("billing", "billing")]:
        made[name] = Membership.objects.unscoped().create(
            tenant=tenant, user=make_user(f"{name}@acme.example.com"), role=role
        )
    return made


def _as(membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def _role(membership) -> str:
    return Membership.objects.unscoped().get(id=membership.id).role


def test_admin_cannot_make_itself_owner(crew):
    response = _as(crew["admin"]).post(f"/members/{crew['admin'].id}/role/", {"role": "owner"})
    assert response.status_code == 403
    assert "owner" in response.content.decode()
    assert _role(crew["admin"]) == "admin"
    assert not AuditEvent.objects.unscoped().filter(action="member.role").exists()


@pytest.mark.parametrize("target", ["owner", "owner2"])
def test_admin_cannot_demote_or_remove_an_owner(crew, target):
    admin = _as(crew["admin"])
    assert admin.post(f"/members/{crew[target].id}/role/", {"role": "member"}).status_code == 403
    assert admin.post(f"/members/{crew[target].id}/remove/").status_code == 403
    assert _role(crew[target]) == "owner"


def test_admin_cannot_make_someone_else_owner(crew):
    assert (
        _as(crew["admin"]).post(f"/members/{crew['member'].id}/role/", {"role": "owner"}).status_code == 403
    )
    assert _role(crew["member"]) == "member"


def test_admin_manages_members_admins_and_billing(crew, make_user, tenant):
    admin = _as(crew["admin"])
    assert admin.post(f"/members/{crew['member'].id}/role/", {"role": "admin"}).status_code == 302
    assert _role(crew["member"]) == "admin"
    assert admin.post(f"/members/{crew['member'].id}/role/", {"role": "billing"}).status_code == 302
    assert _role(crew["member"]) == "billing"
    other_admin = Membership.objects.unscoped().create(
        tenant=tenant, user=make_user("a2@acme.example.com"), role="admin"
    )
    assert admin.post(f"/members/{other_admin.id}/remove/").status_code == 302
    assert not Membership.objects.unscoped().filter(id=other_admin.id).exists()
    assert (
        AuditEvent.objects.unscoped().filter(action="member.remove", actor_user=crew["admin"].user).exists()
    )


def test_nobody_raises_their_own_role(crew):
    assert (
        _as(crew["member"]).post(f"/members/{crew['member'].id}/role/", {"role": "admin"}).status_code == 403
    )
    assert (
        _as(crew["billing"]).post(f"/members/{crew['billing'].id}/role/", {"role": "owner"}).status_code
        == 403
    )
    assert _role(crew["member"]) == "member"
    assert _role(crew["billing"]) == "billing"


def test_admin_may_lower_its_own_role(crew):
    assert (
        _as(crew["admin"]).post(f"/members/{crew['admin'].id}/role/", {"role": "member"}).status_code == 302
    )
    assert _role(crew["admin"]) == "member"


def test_owner_grants_changes_and_removes_the_owner_role(crew):
    owner = _as(crew["owner"])
    assert owner.post(f"/members/{crew['admin'].id}/role/", {"role": "owner"}).status_code == 302
    assert _role(crew["admin"]) == "owner"
    assert owner.post(f"/members/{crew['owner2'].id}/role/", {"role": "admin"}).status_code == 302
    assert _role(crew["owner2"]) == "admin"
    assert owner.post(f"/members/{crew['admin'].id}/remove/").status_code == 302
    assert not Membership.objects.unscoped().filter(id=crew["admin"].id).exists()
    changes = list(
        AuditEvent.objects.unscoped().filter(action="member.role").values_list("changes", flat=True)
    )
    assert {"role": ["admin", "owner"]} in changes
    assert {"role": ["owner", "admin"]} in changes


def test_members_page_offers_admins_no_owner_choices(crew):
    page = _as(crew["admin"]).get("/members/").content.decode()
    assert 'value="owner"' not in page
    assert f"/members/{crew['owner'].id}/remove/" not in page
    assert f"/members/{crew['member'].id}/remove/" in page
    assert 'value="owner"' in _as(crew["owner"]).get("/members/").content.decode()


def test_admin_cannot_invite_an_owner(crew, tenant):
    response = _as(crew["admin"]).post("/members/", {"email": "alt@example.com", "role": "owner"})
    assert response.status_code == 400
    assert "above your own" in response.content.decode()
    from tenants.models import Invitation

    assert not Invitation.objects.unscoped().filter(tenant=tenant).exists()
