"""The in-app assistant: threads and messages; a reply is produced by a Celery task through the router."""

from __future__ import annotations

import logging
import time

from celery import current_app
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from llm.calls.admission import CallContext
from llm.calls.entry import chat_streamed, error_text, run
from llm.calls.errors import GatewayError
from llm.calls.hints import gateway_problem
from llm.calls.listing import models_for_gateway
from llm.config.catalog import Catalog, get_catalog
from llm.models import Message, Thread
from tenants.audit import Actor, audit_record
from tenants.models import Agent, Tenant, User

log = logging.getLogger(__name__)
_PROGRESS_TTL = 600
MAX_CONTEXT_MESSAGES = 40


ModelChoices = list[tuple[str, list[tuple[str, str]]]]  # (group label, [(model id, label)])


def _is_embedding(model_id: str, catalog: Catalog) -> bool:
    info = catalog.model(model_id)
    if info is not None:
        return "embeddings" in info.capabilities
    return "embed" in model_id.lower()  # a pulled Ollama model: nomic-embed-text, mxbai-embed-large, …


def model_choices(*, tenant_id: int) -> ModelChoices:
    """The chat models a new chat may use, grouped as people look for them: the workspace's default and routes,
    then each provider's models by name, then the tenant's own endpoint; never an embedding model."""
    catalog = get_catalog()
    groups: dict[str, list[tuple[str, str]]] = {}
    for model_id in models_for_gateway(tenant_id=tenant_id, agent_id=None):
        if _is_embedding(model_id, catalog):
            continue
        info = catalog.model(model_id)
        if model_id == "default":
            group, label = "This workspace", "Workspace default (LLM settings)"
        elif model_id.startswith("route:"):
            group, label = "This workspace", f"Route “{model_id.removeprefix('route:')}”"
        elif info is not None and info.provider != "ollama":
            provider = catalog.providers.get(info.provider)
            group, label = (provider.name if provider else info.provider), info.name
        else:
            group, label = "Enterprise custom endpoint", model_id.removeprefix("ollama:")
        groups.setdefault(group, []).append((model_id, label))
    return list(groups.items())


def _progress_key(message_id: int) -> str:
    return f"assistant:progress:{message_id}"


def access_thread(*, tenant: Tenant, user: User, thread_id: int | str) -> Thread:
    """A thread of this user in this tenant, or 404 (the same for another tenant's or user's thread)."""
    try:
        return Thread.objects.for_tenant(tenant).get(user=user, id=int(thread_id))
    except (Thread.DoesNotExist, ValueError, TypeError):
        raise Http404("No such thread.") from None


def thread_create(
    *, tenant: Tenant, user: User, title: str = "", model: str = "default", agent: Agent | None = None
) -> Thread:
    return Thread.objects.for_tenant(tenant).create(
        user=user, title=(title or "New chat")[:200], model=model or "default", agent=agent
    )


def thread_rename(*, thread: Thread, title: str) -> Thread:
    title = (title or "").strip()
    if not title:
        raise ValidationError({"title": ["The title cannot be empty."]})
    thread.title = title[:200]
    thread.save(update_fields=["title"])
    return thread


def thread_delete(*, thread: Thread, actor: Actor) -> None:
    with transaction.atomic():
        audit_record(tenant=thread.tenant, actor=actor, action="assistant.thread.delete", obj=thread)
        thread.delete()


def message_post(*, thread: Thread, content: str, model: str | None = None) -> tuple[Message, Message]:
    """Store the user's message and a pending reply; the reply task is enqueued after commit."""
    content = (content or "").strip()
    if not content:
        raise ValidationError({"content": ["Write a message first."]})
    if len(content) > 100_000:
        raise ValidationError({"content": ["The message is too long (100,000 characters at most)."]})
    with transaction.atomic():
        if model:
            thread.model = model[:200]
        if thread.title == "New chat":
            thread.title = content[:60]
        thread.updated_at = timezone.now()
        thread.save(update_fields=["model", "title", "updated_at"])
        user_msg = Message.objects.for_tenant(thread.tenant).create(
            thread=thread, role="user", content=content
        )
        reply = Message.objects.for_tenant(thread.tenant).create(
            thread=thread,
            role="assistant",
            status=Message.Status.PENDING,
            model=thread.model,
        )
        # By name, not by importing llm.tasks: the task module imports this one.
        transaction.on_commit(lambda: current_app.tasks["llm.assistant_reply"].delay(reply.id))
    return user_msg, reply


def error_help(message: Message) -> dict[str, str] | None:
    """Where a failed reply's remedy is: Billing for a cap, the LLM settings for a provider or settings problem."""
    if message.status != Message.Status.ERROR or message.error_kind in ("", "rate", "internal"):
        return None
    if message.error_kind == "cap":
        return {"text": "Open Billing", "url": reverse("billing")}
    return {"text": "Open LLM settings", "url": reverse("llm_settings")}


def message_progress(message: Message) -> dict:
    """The reply as the page sees it: partial text while streaming (from Redis), final text after."""
    content = message.content
    if message.status in (Message.Status.PENDING, Message.Status.STREAMING):
        content = cache.get(_progress_key(message.id), content)
    return {
        "id": message.id,
        "role": message.role,
        "status": message.status,
        "content": content,
        "model": message.model,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "cost_usd": float(message.cost_usd),
        "tcu": message.tcu,
        "error": message.error,
        "error_hint": message.error_hint,
        "error_help": error_help(message),
        "created_at": message.created_at.isoformat(),
    }


def _agent_allow_list(tenant_id: int, agent_id: int | None) -> tuple[str, ...]:
    """What the thread's agent may call (empty = anything): its replies are held to it, as its keys are."""
    if agent_id is None:
        return ()
    allowed = Agent.objects.for_tenant(tenant_id).filter(id=agent_id).values_list("allowed_models", flat=True)
    return tuple(allowed.first() or ())


def reply_run(message_id: int) -> None:
    """Produce the reply of a pending assistant message (the Celery task's body)."""
    reply = Message.objects.unscoped().select_related("thread").filter(id=message_id).first()
    if reply is None or reply.status not in (Message.Status.PENDING, Message.Status.STREAMING):
        return  # deleted meanwhile, or already answered (a redelivered task)
    thread = reply.thread
    history = list(
        Message.objects.for_tenant(thread.tenant_id)
        .filter(thread=thread, status=Message.Status.DONE)
        .exclude(id=reply.id)
        .order_by("-created_at", "-id")[:MAX_CONTEXT_MESSAGES]
    )
    messages = [{"role": m.role, "content": m.content} for m in reversed(history)]
    ctx = CallContext(
        tenant_id=thread.tenant_id,
        request_type="assistant",
        agent_id=thread.agent_id,
        user_id=thread.user_id,
        agent_allowed_models=_agent_allow_list(thread.tenant_id, thread.agent_id),
    )
    Message.objects.for_tenant(thread.tenant_id).filter(id=reply.id).update(
        status=Message.Status.STREAMING, request_id=ctx.request_id
    )
    last_publish = [0.0]

    def publish(text: str) -> None:
        now = time.monotonic()
        if now - last_publish[0] >= 0.05:
            last_publish[0] = now
            cache.set(_progress_key(reply.id), text, _PROGRESS_TTL)

    try:
        result = run(
            chat_streamed(ctx, {"model": thread.model, "messages": messages, "stream": True}, publish)
        )
    except Exception as exc:
        log.info(
            "assistant reply %s failed: %s",
            reply.id,
            exc.__class__.__name__,
            exc_info=not isinstance(exc, GatewayError),
        )
        kind, hint = (
            gateway_problem(exc)
            if isinstance(exc, GatewayError)
            else ("internal", "Something went wrong on our side; send again in a moment.")
        )
        Message.objects.for_tenant(thread.tenant_id).filter(id=reply.id).update(
            status=Message.Status.ERROR, error=error_text(exc), error_kind=kind, error_hint=hint
        )
        cache.delete(_progress_key(reply.id))
        return
    usage = result["usage"]
    Message.objects.for_tenant(thread.tenant_id).filter(id=reply.id).update(
        status=Message.Status.DONE,
        content=result["content"],
        model=result["model"] or thread.model,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cost_usd=usage.cost_usd if usage else 0,
        tcu=usage.tcu if usage else 0,
    )
    cache.delete(_progress_key(reply.id))
