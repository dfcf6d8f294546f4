"""A rotated key's old secret works in every gateway process during its grace period and stops in every one of
them when it ends, measured against two real uvicorn processes that had the old secret cached (for 5 s) before
the rotation: the rotation is announced on Redis, so neither keeps the old secret's pre-rotation state."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.gateway.conftest import _free_port
from tests.gateway.test_durability import _serve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GRACE = 3  # seconds; below the processes' 5 s key cache, so a stale entry would still accept the old secret


def _wait_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"gateway subprocess at {base} did not start"
        time.sleep(0.1)


def test_old_secret_works_on_both_processes_during_the_grace_and_on_neither_after(fake, tenant, make_key):
    from billing.plans import assign_plan
    from tenants.audit import SYSTEM
    from tenants.keys import apikey_rotate, hash_key
    from tenants.models import ApiKey

    assign_plan(tenant=tenant, plan_slug="enterprise")
    old = make_key(tenant, scopes=["gateway"])
    ports = [_free_port(), _free_port()]
    procs = [_serve(port, fake.url) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    body = {"model": "openai:gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}

    def status(client: httpx.Client, secret: str) -> int:
        return client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}
        ).status_code

    try:
        for base in bases:
            _wait_up(base)
        clients = [httpx.Client(base_url=base, timeout=10) for base in bases]
        assert [status(c, old) for c in clients] == [
            200,
            200,
        ]  # both processes now have the old secret cached
        time.sleep(0.5)  # and listen for announcements

        _, new = apikey_rotate(
            key=ApiKey.objects.unscoped().get(key_hash=hash_key(old)), actor=SYSTEM, grace_seconds=GRACE
        )
        rotated = time.monotonic()
        during = {"old": [status(c, old) for c in clients], "new": [status(c, new) for c in clients]}
        assert time.monotonic() - rotated < GRACE, "too slow to observe the grace period"
        assert during == {"old": [200, 200], "new": [200, 200]}

        time.sleep(max(0.0, GRACE + 0.3 - (time.monotonic() - rotated)))
        after = {"old": [status(c, old) for c in clients], "new": [status(c, new) for c in clients]}
        # Well within the processes' 5 s key cache: a refusal on both comes from the rotation's announcement.
        assert time.monotonic() - rotated < 5.0
        assert after == {"old": [401, 401], "new": [200, 200]}
        for c in clients:
            c.close()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
