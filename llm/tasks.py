"""Celery tasks of the llm app: drain queued usage events, roll usage up, run assistant replies and jobs.

The tasks that make calls import the call path when they first run: a worker that only drains and rolls up usage
does not carry the upstream clients and the gateway's caches.
"""

import logging

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from llm.metering import queue as metering
from llm.runtime import responses_store
from llm.usage import rollups as usage
from llm.usage import selectors

log = logging.getLogger(__name__)


_drainer: list[metering.DrainThread] = []


@worker_ready.connect
def start_usage_drainer(sender: object = None, **_: object) -> None:
    """The worker drains the usage queue every USAGE_DRAIN_INTERVAL seconds, beside its tasks, when
    USAGE_DRAINERS says so (the default with Redis). Not under the prefork pool: a child forked later would inherit
    the drainer's open database connection, and closing it there would end the parent's session; there beat's
    task (every 5 s) and any web drainers move the events."""
    if "worker" not in settings.USAGE_DRAINERS or _drainer:
        return
    pool = getattr(sender, "pool", None)
    if type(pool).__module__.endswith(".prefork"):
        log.info("prefork pool: usage is drained by beat's task, not by a thread of this worker")
        return
    thread = metering.DrainThread(settings.USAGE_DRAIN_INTERVAL)
    thread.start()
    _drainer.append(thread)


@worker_shutdown.connect
def stop_usage_drainer(**_: object) -> None:
    """A last drain, then the thread ends (the worker waits for it)."""
    while _drainer:
        _drainer.pop().stop()


@shared_task(
    name="llm.drain_usage_events",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=5,
)
def drain_usage_events() -> int:
    return metering.drain()


@shared_task(
    name="llm.rollup_usage", acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5
)
def rollup_usage() -> int:
    metering.drain()
    rolled: set[int] = set()
    written = usage.rollup_pending(rolled=rolled)
    try:  # the usage pages' reads of these tenants, folded now rather than by the next view
        selectors.warm_recent_reads(rolled)
    except Exception:  # the rollup is done: a failed warm-up only leaves the next read to fold
        log.exception("warming the usage reads after the rollup failed")
    return written


@shared_task(name="llm.assistant_reply", acks_late=True)
def assistant_reply(message_id: int) -> None:
    from llm.runtime.assistant import reply_run  # lazy: the call path and the upstream clients

    reply_run(message_id)


@shared_task(name="llm.run_job", acks_late=True)
def run_job(job_id: int) -> None:
    from llm.runtime.jobs import job_run  # lazy: the call path and the upstream clients

    job_run(job_id)


@shared_task(name="llm.purge_stored_responses", acks_late=True)
def purge_stored_responses() -> int:
    """Delete stored Responses API answers past `RESPONSES_RETENTION_DAYS`."""
    return responses_store.purge_expired()
