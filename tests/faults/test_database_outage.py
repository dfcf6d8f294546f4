"""PostgreSQL unreachable (the gateway process reaches it through a proxy that the test cuts; the shared server
stays up): warm tenants keep being served, their events wait in Redis and land once the database is back,
`/readyz` names the database, and a tenant never seen gets a clean 503."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from llm.calls import hot_cache
from llm.limits import budget
from tests.faults.conftest import configure_custom_tenant, database_url, events_by_request_id, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


def forget_shared_cache(client) -> None:
    """Drop this run's entries of Django's cache (keys `<prefix>:<version>:<key>`), not the gateway's counters."""
    keys = list(client.scan_iter(f"{budget.NS}:1:*", count=1000))
    if keys:
        client.delete(*keys)


def _call(client: httpx.Client, key: str, *, stream: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if not stream:
        return client.post("/v1/chat/completions", json=BODY, headers=headers)
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        response.read()
    return response


# refuse: the database host is down (connections refused); blackhole: a network partition (connections accepted,
# never answered), which needs a connect timeout on the database connection to fail rather than hang.
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_database_unreachable_warm_tenants_served_events_land_later(
    fake, tenant, other_tenant, make_key, gateway_process, pg_proxy, mode
):
    # (gateway_process before pg_proxy: on teardown the proxy closes first, refusing, so that a gateway process
    # left behind a black hole by a failure still shuts down at once.)
    key = configure_custom_tenant(tenant, make_key, fake.url)
    cold_key = configure_custom_tenant(other_tenant, make_key, fake.url)  # never called before the outage
    gateway = gateway_process(DATABASE_URL=database_url(port=pg_proxy.port), CONN_MAX_AGE="0")
    answered: list[str] = []
    # The gateway process queues on this run's prefix of the shared Redis.
    stream = budget.backend().sync_client()

    with httpx.Client(base_url=gateway.url, timeout=20) as client:
        for i in range(4):  # warm the tenant: its key, limits and route are now known to the process
            response = _call(client, key, stream=i % 2 == 1)
            assert response.status_code == 200, response.text
            answered.append(response.headers["x-request-id"])
        assert client.get("/readyz").status_code == 200
        wait_for(lambda: set(answered) <= set(events_by_request_id()), "the warm-up calls' events")

        pg_proxy.cut(mode)
        cut_at = time.monotonic()
        # The outage outlasts every cache: keys, limits and route versions that Django's cache (this run's
        # prefix of Redis) holds for minutes are gone, so the process has to fall back on what it last knew.
        forget_shared_cache(stream)
        # Keep calling past every cache lifetime, so the last calls are served from stale-if-error entries.
        outlast = max(hot_cache.KEY_TTL, hot_cache.LIMITS_TTL, hot_cache.ROUTE_TTL) + 1
        during: list[str] = []
        i = 0
        while time.monotonic() < cut_at + outlast or i < 6:
            response = _call(client, key, stream=i % 2 == 1)
            assert response.status_code == 200, (
                f"call {i} during the outage: {response.text}\n{gateway.log_tail()}"
            )
            during.append(response.headers["x-request-id"])
            i += 1
            time.sleep(0.2)

        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["failing"] == ["database"]

        refused = _call(client, cold_key)
        assert refused.status_code == 503, refused.text
        error = orjson.loads(refused.content)["error"]
        assert error["code"] == "service_unavailable"
        assert error["type"] == "api_error"
        assert refused.headers["x-request-id"]

        # The events wait in Redis (the gateway's drain loop keeps trying and fails) and none reached PostgreSQL.
        assert not set(during) & set(events_by_request_id())
        assert stream.xlen(budget.EVENTS_KEY) >= len(during)

        pg_proxy.restore()
        wait_for(lambda: client.get("/readyz").status_code == 200, "/readyz to be ready again")
        answered += during
        wait_for(
            lambda: set(answered) <= set(events_by_request_id()),
            "the events queued during the outage",
            detail=gateway.log_tail,
        )

    counts = events_by_request_id()
    assert all(counts[rid] == 1 for rid in answered)
    assert len(counts) == len(answered), "no event of a call that was refused"
    wait_for(lambda: stream.xlen(budget.EVENTS_KEY) == 0, "the usage stream to be empty")
    assert stream.xlen(budget.DEAD_KEY) == 0
