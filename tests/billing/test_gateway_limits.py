"""The gateway's admission reads billing's limits: the hard cap refuses with 402 and raising it works at once."""

import asyncio
from types import SimpleNamespace

import pytest

from billing.caps import caps_update
from billing.plans import assign_plan
from tenants.audit import SYSTEM

from .conftest import make_usage

router = pytest.importorskip("llm.calls.call")
# The router loads limits and seeds counters in worker threads (their own connections): commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

TARGET = SimpleNamespace(
    mode="byok",
    provider="openai",
    base_url="http://127.0.0.1:1/v1",
    upstream_model="gpt-x",
    credential_id=1,
    input_usd_per_mtok=None,
    output_usd_per_mtok=None,
    params={},
    max_output_tokens=100,
    model_id="openai:gpt-x",
)
BODY = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}


def _run(coro):
    """Run the router's coroutine; close the DB connection its worker thread opened (else the test DB stays busy)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    async def wrapped():
        try:
            return await coro
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(wrapped())


def _admit(tenant, target=TARGET):
    from llm.limits import budget

    reservation, _ = _run(router.admit(router.CallContext(tenant_id=tenant.id), BODY, [target]))
    budget.settle(reservation, actual=0)


def test_hard_cap_refuses_with_402_and_raising_it_works_at_once(tenant):
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=500, hard_tcu=1000)
    make_usage(tenant, tcu=1000, mode="byok")
    with pytest.raises(router.GatewayError) as info:
        _admit(tenant)
    assert info.value.status == 402
    assert info.value.code == "tcu_hard_cap_reached"
    assert "1,000 of 1,000 TCU used" in info.value.message
    assert "UTC" in info.value.message
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=500, hard_tcu=5000)
    _admit(tenant)  # admitted


def test_free_plan_refuses_platform_mode_but_admits_byok(tenant):
    assign_plan(tenant=tenant, plan_slug="free")
    _admit(tenant)
    with pytest.raises(router.GatewayError) as info:
        _admit(tenant, SimpleNamespace(**{**vars(TARGET), "mode": "platform"}))
    assert info.value.status == 403
    assert "BYOK" in info.value.message
