"""Tenant B can never read, change, delete or list tenant A's objects, on any endpoint."""

import pytest

from tests.isolation import ENDPOINTS

# platform_allowed: the routes made name platform-mode targets, which the workspace may then call
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("platform_allowed")]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_other_tenant_cannot_see_or_touch(endpoint, tenant, manage_client, other_client):
    detail_url, marker = endpoint.make(tenant)

    if endpoint.list_url:
        own = manage_client.get(endpoint.list_url)
        assert own.status_code == 200
        assert marker in own.content.decode(), "the owner must see its object (else the test proves nothing)"
        theirs = other_client.get(endpoint.list_url)
        assert theirs.status_code == 200
        assert marker not in theirs.content.decode()

    if detail_url:
        assert manage_client.get(detail_url).status_code == 200
        read = other_client.get(detail_url)
        assert read.status_code == 404
        assert marker not in read.content.decode()
        if endpoint.update_body is not None:
            changed = getattr(other_client, endpoint.update_method)(
                detail_url, endpoint.update_body, format="json"
            )
            assert changed.status_code == 404
        if endpoint.can_delete:
            assert other_client.delete(detail_url).status_code == 404
        after = manage_client.get(detail_url)
        assert after.status_code == 200
        assert marker in after.content.decode()
        body = after.json()
        if isinstance(body, dict):
            assert body.get("revoked_at") is None, "a failed delete from B must not revoke A's key"
            if endpoint.update_body:
                for field, value in endpoint.update_body.items():
                    assert body.get(field) != value, "B's update must not have changed A's object"
