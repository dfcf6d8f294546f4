"""Redis killed and restarted under load: calls fail fast with a clean 503 while it is gone, recover by themselves
once it is back, and every call answered 200 has exactly one UsageEvent in PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from llm.limits import budget
from tests.faults.conftest import Load, configure_custom_tenant, events_by_request_id, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


SLOW = {"messages": [{"role": "user", "content": "hi"}]}


def _is_clean_503(result: dict) -> bool:
    if result["status"] != 503 or not result.get("rid"):
        return False
    error = orjson.loads(result["body"]).get("error") or {}
    return error.get("code") == "service_unavailable" and error.get("type") == "api_error"


def test_redis_restarted_under_load(fake, tenant, make_key, private_redis, gateway_process):
    key = configure_custom_tenant(tenant, make_key, fake.url)
    gateway = gateway_process(REDIS_URL=private_redis.url)
    load = Load(gateway.url, key, workers=4)
    slow = None
    try:
        load.phase = "up"
        wait_for(lambda: load.count("up", 200) >= 20, "20 answered calls before the fault")

        # Two calls the provider takes 3 s to answer, admitted before the kill and finishing while Redis is gone.
        slow = Load(gateway.url, key, workers=2, max_calls=2, body={**SLOW, "model": "slow"})
        wait_for(
            lambda: sum(1 for r in fake.requests if (r[2] or {}).get("model") == "slow") >= 2,
            "the slow calls to reach the provider",
        )
        private_redis.kill()  # SIGKILL, with calls in flight
        load.phase = "down"
        wait_for(
            lambda: load.count("down", 503) >= 20,
            "20 calls refused while Redis is gone",
            detail=lambda: load.summary() + "\n" + gateway.log_tail(),
        )
        wait_for(lambda: len(slow.results) >= 2, "the slow calls to end", detail=slow.summary)

        private_redis.start()  # same port, same data directory (AOF)
        load.phase = "back"
        wait_for(
            lambda: load.count("back", 200) >= 20, "calls to succeed again without any restart of the gateway"
        )
    finally:
        results = load.stop()
        results += slow.stop() if slow is not None else []

    failures = [r for r in results if r["status"] != 200 and not _is_clean_503(r)]
    assert not failures, (
        f"{len(failures)} calls neither 200 nor a clean 503, e.g. {failures[:3]}\n{gateway.log_tail()}"
    )
    answered = {r["rid"] for r in results if r["status"] == 200}
    assert len(answered) == sum(1 for r in results if r["status"] == 200), "request ids are unique"

    # Everything answered lands exactly once (the gateway's own drain loop moves it; nothing here drains).
    wait_for(
        lambda: answered <= set(events_by_request_id()), "every answered call's UsageEvent in PostgreSQL"
    )
    counts = events_by_request_id()
    assert all(counts[rid] == 1 for rid in answered)
    assert set(counts) <= {r["rid"] for r in results if r.get("rid")}, "no event of a call never made"

    # Nothing left behind in Redis: the queue is empty, nothing dead-lettered, no TCU still reserved.
    client = private_redis.client()
    wait_for(lambda: client.xlen(budget.EVENTS_KEY) == 0, "the usage stream to be empty")
    assert client.xlen(budget.DEAD_KEY) == 0
    wait_for(
        lambda: all(int(client.get(k) or 0) == 0 for k in client.scan_iter(f"{budget.NS}:tcu-resv:*")),
        "every reservation to be released",
    )
    client.close()
