"""Fuzz fixtures: a custom-mode tenant on the fake upstream, reached through the real gateway, with every counter
the trust core keeps (concurrency slot, tenant and key reservations, rate windows) in play."""

from __future__ import annotations

import pytest

from llm.limits import budget
from tests.gateway.conftest import gateway_url, reconfigured

__all__ = ["gateway_url"]  # the real gateway under uvicorn, shared with tests/gateway


def counters_at_rest(tenant_id: int) -> None:
    """No concurrency slot held and nothing reserved, for the tenant and its keys: what every call leaves."""
    client = budget.backend().sync_client()
    assert int(client.get(f"{budget.NS}:cc:{tenant_id}") or 0) == 0, "a concurrency slot leaked"
    for key in client.scan_iter(f"{budget.NS}:tcu-resv:*"):
        assert int(client.get(key) or 0) == 0, f"a reservation leaked: {key!r}"


@pytest.fixture
def fuzz_tenant(gateway_url, fake, tenant, make_key, manage_client):
    """The free plan (20 concurrent calls) with request limits too high to reach, so a few hundred calls are not refused
    with 429 and each one takes and gives back a concurrency slot; a key with a spend limit, so every admitted call
    reserves against the tenant and the key."""
    from billing.caps import invalidate_all
    from billing.models import Plan

    Plan.objects.filter(slug="free").update(rpm_tenant=10**6, rpm_key=10**6, monthly_request_cap=10**6)
    invalidate_all()
    saved = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "gpt-fake",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": fake.url + "/v1",
                "input_usd_per_mtok": 1,
                "output_usd_per_mtok": 2,
            },
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content
    reconfigured()
    key = make_key(tenant, scopes=["gateway"], spend_limit_tcu=10**12)
    return {"tenant": tenant, "key": key, "url": gateway_url}
