"""Processes SIGKILLed at the worst moments: a web process in the middle of streams, a drainer holding a batch it
has read (and maybe inserted) but not acknowledged. No event is lost or doubled.

(tests/gateway/test_durability.py kills a web process under non-streamed load; these add streams and the drain.)
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter

import httpx
import orjson
import pytest
from django.db.models import Sum

from llm.limits import budget
from llm.metering import queue as metering
from tests.faults.conftest import (
    ROOT,
    Load,
    configure_custom_tenant,
    events_by_request_id,
    service_env,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class Streams:
    """Client threads streaming chat (with usage) until the server goes away; short answers and slow ones
    (`drip`: 50 chunks, 50 ms apart) alternate, so some streams are always half-way through."""

    def __init__(self, url: str, key: str, workers: int = 4, max_calls: int = 400):
        self.url, self.key, self.max_calls = url, key, max_calls
        self.completed: dict[str, int] = {}  # request id → completion tokens the client was told
        self.partial: dict[str, int] = {}  # request id → chunks received (in progress, or cut by the kill)
        self.started = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def _work(self, n: int) -> None:
        with httpx.Client(
            base_url=self.url, timeout=20, headers={"Authorization": f"Bearer {self.key}"}
        ) as client:
            i = 0
            while not self._stop.is_set() and self.started < self.max_calls:
                with self._lock:
                    self.started += 1
                model = "drip" if (n + i) % 2 else "gpt-fake"
                i += 1
                body = {
                    "model": model,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "hi"}],
                }
                try:
                    with client.stream("POST", "/v1/chat/completions", json=body) as response:
                        assert response.status_code == 200, response.read()
                        rid = response.headers["x-request-id"]
                        usage = None
                        for line in response.iter_lines():
                            if line == "data: [DONE]":
                                with self._lock:
                                    self.partial.pop(rid, None)
                                    self.completed[rid] = usage["completion_tokens"]
                                break
                            if line.startswith("data: "):
                                chunk = orjson.loads(line[6:])
                                usage = chunk.get("usage") or usage
                                with self._lock:
                                    self.partial[rid] = self.partial.get(rid, 0) + 1
                except httpx.HTTPError:
                    return  # the server was killed under this stream

    def ready_to_kill(self) -> bool:
        with self._lock:
            return len(self.completed) >= 8 and any(n >= 5 for n in self.partial.values())

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a client thread is stuck"


def test_web_process_sigkilled_mid_stream(fake, tenant, make_key, gateway_process, settings):
    settings.USAGE_CLAIM_IDLE_MS = (
        300  # the killed process may hold a batch of its own drain loop: take it over
    )
    key = configure_custom_tenant(tenant, make_key, fake.url)
    gateway = gateway_process()
    streams = Streams(gateway.url, key)
    try:
        wait_for(streams.ready_to_kill, "finished streams and one half-way through", timeout=60)
        gateway.kill()
    finally:
        streams.stop()
    cut = {rid for rid, chunks in streams.partial.items() if chunks}
    assert cut, "the kill cut no stream short"

    metering.flush()
    counts = events_by_request_id()
    assert all(counts.get(rid) == 1 for rid in streams.completed), (
        "every finished stream has exactly one event"
    )
    assert set(counts) <= set(streams.completed) | cut, "no event of a call never made"
    assert all(n == 1 for n in counts.values())
    from llm.models import UsageEvent

    told = {
        e.request_id: e.output_tokens
        for e in UsageEvent.objects.unscoped().filter(request_id__in=streams.completed)
    }
    assert told == streams.completed, "each event carries the usage the client was told"
    # The tenant's settled TCU in Redis is what PostgreSQL holds: nothing settled twice, nothing settled and lost.
    used = (
        budget.backend()
        .sync_client()
        .get(budget.Scope("tenant", tenant.id, None).used_key(budget.period_of()))
    )
    total = UsageEvent.objects.unscoped().filter(tenant_id=tenant.id).aggregate(t=Sum("tcu"))["t"] or 0
    assert int(used or 0) == total > 0


# A drainer process that reads a batch through the consumer group and is killed before acknowledging it: held
# before inserting anything, or after its rows committed (the takeover then inserts them again).
_DRAINER = """
import os, sys, time
import django
django.setup()
from llm.metering import queue as metering

real_insert = metering._insert

def held_insert(rows):
    if os.environ["HOLD"] == "after-insert":
        real_insert(rows)
    print("HOLDING", len(rows), flush=True)
    time.sleep(600)

metering._insert = held_insert
metering.drain()
"""


@pytest.mark.parametrize("hold", ["before-insert", "after-insert"])
def test_drainer_sigkilled_mid_drain(fake, tenant, make_key, gateway_process, settings, hold):
    key = configure_custom_tenant(tenant, make_key, fake.url)
    gateway = gateway_process(USAGE_DRAIN_INTERVAL="3600")  # it queues; only the drainers below drain
    load = Load(gateway.url, key, workers=1, max_calls=20, pause=0)
    wait_for(lambda: len(load.results) >= 20, "20 calls", detail=load.summary)
    answered = {r["rid"] for r in load.stop() if r["status"] == 200}
    assert len(answered) == 20
    client = budget.backend().sync_client()
    assert client.xlen(budget.EVENTS_KEY) == 20

    drainer = subprocess.Popen(
        [sys.executable, "-c", _DRAINER],
        cwd=ROOT,
        env=service_env(HOLD=hold),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = wait_for_line(drainer, "HOLDING")
        assert line.split() == ["HOLDING", "20"]
        pending = client.xpending(budget.EVENTS_KEY, "drainers")
        assert pending["pending"] == 20
        assert [c["name"] for c in pending["consumers"]] != []
        inserted_before = len(set(events_by_request_id()) & answered)
        assert inserted_before == (20 if hold == "after-insert" else 0)
    finally:
        drainer.kill()
        drainer.wait(timeout=30)

    settings.USAGE_CLAIM_IDLE_MS = 300
    metering.flush()  # another drainer: takes the dead one's batch over once it is 300 ms idle
    counts = events_by_request_id()
    assert set(counts) == answered
    assert all(n == 1 for n in counts.values())
    assert client.xlen(budget.EVENTS_KEY) == 0
    assert client.xlen(budget.DEAD_KEY) == 0
    assert client.xpending(budget.EVENTS_KEY, "drainers")["pending"] == 0
    assert Counter(counts.values()) == Counter({1: 20})


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 60) -> str:
    """The first line of proc's output starting with prefix (read in a thread, so the wait has a deadline)."""
    found: list[str] = []
    seen: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(prefix):
                found.append(line.strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, f"no {prefix!r} line within {timeout:.0f} s; the process said:\n{''.join(seen)[-3000:]}"
    return found[0]
