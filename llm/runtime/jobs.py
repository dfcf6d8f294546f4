"""Batch jobs: a list of chat requests run by a Celery worker with bounded concurrency, cancellable."""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from asgiref.sync import sync_to_async
from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import Http404
from django.utils import timezone

from llm.calls.admission import CallContext
from llm.calls.checks import check_chat
from llm.calls.entry import chat_once, run
from llm.calls.errors import GatewayError
from llm.models import Job, JobItem
from tenants.audit import Actor, audit_record
from tenants.models import Agent, ApiKey, Tenant

log = logging.getLogger(__name__)
MAX_ITEMS = 1000
MAX_CONCURRENCY = 16


def jobs_visible(*, tenant: Tenant, actor: Actor, see_all: bool) -> QuerySet[Job]:
    """The jobs an actor may see and cancel: all of the tenant's with `see_all` (owners, admins, `manage`
    keys), else only the ones they started (a member's own; a key's own). Results go with the job."""
    jobs = Job.objects.for_tenant(tenant)
    if see_all:
        return jobs
    if actor.user is not None:
        return jobs.filter(user=actor.user)
    if actor.api_key is not None:
        return jobs.filter(api_key=actor.api_key)
    return jobs.none()


def access_job(*, tenant: Tenant, job_id: int | str, actor: Actor, see_all: bool) -> Job:
    """A job this actor may see, or 404 (the same for another tenant's and another member's job)."""
    try:
        return jobs_visible(tenant=tenant, actor=actor, see_all=see_all).get(id=int(job_id))
    except (Job.DoesNotExist, ValueError, TypeError):
        raise Http404("No such job.") from None


def job_create(*, tenant: Tenant, actor: Actor, model: str, requests: list, concurrency: int = 4) -> Job:
    errors: dict[str, list[str]] = {}
    if not isinstance(model, str) or not model:
        errors["model"] = ["Name a model, `default` or `route:NAME`."]
    if not isinstance(requests, list) or not requests:
        errors["requests"] = ["Give a non-empty list of chat requests."]
    elif len(requests) > MAX_ITEMS:
        errors["requests"] = [f"At most {MAX_ITEMS} requests per job."]
    else:
        for i, item in enumerate(requests):
            if not isinstance(item, dict):
                errors["requests"] = [f"requests[{i}] must be an object with `messages`."]
                break
            try:
                check_chat({**item, "model": item.get("model") or model})
            except GatewayError as exc:
                errors["requests"] = [f"requests[{i}]: {exc.message}"]
                break
            if item.get("stream"):
                errors["requests"] = [f"requests[{i}]: streaming is not available in batch jobs."]
                break
    if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
        errors["concurrency"] = [f"Must be from 1 to {MAX_CONCURRENCY}."]
    if errors:
        raise ValidationError(errors)
    api_key = actor.api_key
    with transaction.atomic():
        job = Job.objects.for_tenant(tenant).create(
            model=model,
            concurrency=concurrency,
            total=len(requests),
            api_key=api_key,
            agent=api_key.agent if api_key else None,
            user=actor.user,
        )
        JobItem.objects.bulk_create([JobItem(job=job, index=i, request=r) for i, r in enumerate(requests)])
        # By name, not by importing llm.tasks: the task module imports this one.
        transaction.on_commit(lambda: current_app.tasks["llm.run_job"].delay(job.id))
    return job


def job_cancel(*, job: Job, actor: Actor) -> Job:
    if job.status in (Job.Status.QUEUED, Job.Status.RUNNING):
        Job.objects.for_tenant(job.tenant_id).filter(id=job.id).update(cancel_requested=True)
        audit_record(
            tenant=job.tenant, actor=actor, action="job.cancel", obj=job, changes={"status": job.status}
        )
        if job.status == Job.Status.QUEUED:
            Job.objects.for_tenant(job.tenant_id).filter(id=job.id, status=Job.Status.QUEUED).update(
                status=Job.Status.CANCELLED, finished_at=timezone.now()
            )
        job.refresh_from_db()
    return job


def job_read(job: Job, *, with_results: bool = True) -> dict:
    body = {
        "id": job.id,
        "model": job.model,
        "status": job.status,
        "total": job.total,
        "done": job.done_count,
        "failed": job.failed_count,
        "concurrency": job.concurrency,
        "progress": round((job.done_count + job.failed_count) / job.total, 4) if job.total else 0,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
    }
    if with_results:
        body["results"] = [
            {
                "index": it.index,
                "status": it.status,
                "response": it.response,
                "error": it.error,
                "request_id": it.request_id,
            }
            for it in job.items.all()
        ]
    return body


def job_run(job_id: int) -> None:
    """The Celery task's body: run pending items with bounded concurrency; resumable after a crash."""
    job = Job.objects.unscoped().filter(id=job_id).first()
    if job is None or job.status in (Job.Status.DONE, Job.Status.CANCELLED, Job.Status.FAILED):
        return
    Job.objects.for_tenant(job.tenant_id).filter(id=job.id).update(status=Job.Status.RUNNING)
    pending = list(JobItem.objects.filter(job=job, status__in=["queued", "running"]).order_by("index"))
    run(_run_items(job, pending))
    job.refresh_from_db()
    final = Job.Status.CANCELLED if job.cancel_requested else Job.Status.DONE
    Job.objects.for_tenant(job.tenant_id).filter(id=job.id).update(status=final, finished_at=timezone.now())


class _KeyScope(NamedTuple):
    spend_limit_tcu: int | None = None
    allowed_models: tuple[str, ...] = ()
    agent_allowed_models: tuple[str, ...] = ()


def _key_scope(tenant_id: int, api_key_id: int | None, agent_id: int | None) -> _KeyScope:
    """The monthly limit and the allow-lists of the key a job was created with (and of its agent): its items
    spend and call under them, as on /v1."""
    agent_allowed: tuple[str, ...] = ()
    if agent_id is not None:
        agent = (
            Agent.objects.for_tenant(tenant_id).filter(id=agent_id).values_list("allowed_models", flat=True)
        )
        agent_allowed = tuple(agent.first() or ())
    if api_key_id is None:
        return _KeyScope(agent_allowed_models=agent_allowed)
    row = (
        ApiKey.objects.for_tenant(tenant_id)
        .filter(id=api_key_id)
        .values("spend_limit_tcu", "allowed_models")
        .first()
    )
    if row is None:
        return _KeyScope(agent_allowed_models=agent_allowed)
    return _KeyScope(row["spend_limit_tcu"], tuple(row["allowed_models"] or ()), agent_allowed)


async def _run_items(job: Job, items: list[JobItem]) -> None:
    semaphore = asyncio.Semaphore(job.concurrency)
    cancelled = asyncio.Event()
    scope = await sync_to_async(_key_scope)(job.tenant_id, job.api_key_id, job.agent_id)

    def is_cancelled() -> bool:
        return Job.objects.for_tenant(job.tenant_id).filter(id=job.id, cancel_requested=True).exists()

    async def one(item: JobItem) -> None:
        async with semaphore:
            if cancelled.is_set() or await sync_to_async(is_cancelled)():
                cancelled.set()
                return
            ctx = CallContext(
                tenant_id=job.tenant_id,
                request_type="job",
                api_key_id=job.api_key_id,
                key_spend_limit=scope.spend_limit_tcu,
                agent_id=job.agent_id,
                user_id=job.user_id,
                key_allowed_models=scope.allowed_models,
                agent_allowed_models=scope.agent_allowed_models,
            )
            body = {**item.request, "model": item.request.get("model") or job.model}
            try:
                response = await chat_once(ctx, body)
                fields = {"status": "done", "response": response, "request_id": ctx.request_id}
                counter = "done_count"
            except GatewayError as exc:
                fields = {
                    "status": "failed",
                    "error": {"status": exc.status, "code": exc.code, "message": exc.message},
                    "request_id": ctx.request_id,
                }
                counter = "failed_count"
            await sync_to_async(_save_item)(job.tenant_id, item.id, job.id, fields, counter)

    await asyncio.gather(*(one(item) for item in items))


def _save_item(tenant_id: int, item_id: int, job_id: int, fields: dict, counter: str) -> None:
    with transaction.atomic():
        updated = JobItem.objects.filter(id=item_id).exclude(status__in=["done", "failed"]).update(**fields)
        if updated:
            Job.objects.for_tenant(tenant_id).filter(id=job_id).update(**{counter: F(counter) + 1})
