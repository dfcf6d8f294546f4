"""Two owners demoting each other at the same moment: one wins, the tenant always keeps an owner."""

import threading
import time

import pytest
from django.db import connection
from django.test import Client

from tenants import services
from tenants.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_two_owners_demoting_each_other_leave_one_owner(tenant, make_user, monkeypatch):
    first = Membership.objects.unscoped().get(tenant=tenant, role="owner")
    second = Membership.objects.unscoped().create(
        tenant=tenant, user=make_user("o2@acme.example.com"), role="owner"
    )

    # Each request pauses just before it commits (at its audit entry) until both are there, or until
    # the other is seen waiting on a row lock: the moment two unlocked checks would both pass.
    arrived: list[str] = []
    go = threading.Event()
    real_audit = services.audit_record

    def paused_audit(**kwargs):
        arrived.append(kwargs["action"])
        go.wait(timeout=20)
        return real_audit(**kwargs)

    monkeypatch.setattr(services, "audit_record", paused_audit)
    statuses: dict[str, int] = {}

    def demote(actor: Membership, target: Membership, name: str) -> None:
        try:
            client = Client()
            client.force_login(actor.user)
            statuses[name] = client.post(f"/members/{target.id}/role/", {"role": "admin"}).status_code
        finally:
            connection.close()

    threads = [
        threading.Thread(target=demote, args=(first, second, "first")),
        threading.Thread(target=demote, args=(second, first, "second")),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(arrived) == 2 or (len(arrived) == 1 and _lock_waiters() >= 1):
            break
        time.sleep(0.01)
    go.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)

    owners = Membership.objects.unscoped().filter(tenant=tenant, role="owner")
    assert owners.count() == 1, f"statuses {statuses}"
    assert sorted(statuses.values()) == [302, 403]  # the loser is no longer an owner when its turn comes
