"""Stored Responses API answers (`store: true`): kept per tenant until `RESPONSES_RETENTION_DAYS`, read by id for
GET, DELETE, input items and `previous_response_id`. Synchronous; the gateway calls it through its thread pool.
Nothing here logs a prompt or an answer."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from llm.models import StoredResponse

_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def _live(tenant_id: int, response_id: str):
    return StoredResponse.objects.for_tenant(tenant_id).filter(
        response_id=response_id, expires_at__gt=timezone.now()
    )


def retention_days() -> int:
    return max(int(settings.RESPONSES_RETENTION_DAYS), 0)


def conversation_of(tenant_id: int, response_id: str) -> list[dict] | None:
    """The chat messages a follow-up of the response continues, or None: no such (live) response here."""
    row = _live(tenant_id, response_id).values_list("conversation", flat=True).first()
    return list(row) if row is not None else None


def save(
    *,
    tenant_id: int,
    api_key_id: int | None,
    agent_id: int | None,
    body: dict,
    items: list[dict],
    conversation: list[dict],
) -> None:
    days = retention_days()
    if days == 0:
        return
    with_ids = [
        {"id": f"{_ITEM_PREFIX.get(str(i.get('type')), 'item')}_{uuid.uuid4().hex}", **i} for i in items
    ]
    StoredResponse.objects.for_tenant(tenant_id).create(
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        agent_id=agent_id,
        response_id=body["id"],
        body=body,
        input_items=with_ids,
        conversation=conversation,
        expires_at=timezone.now() + timedelta(days=days),
    )


def body_of(tenant_id: int, response_id: str) -> dict | None:
    return _live(tenant_id, response_id).values_list("body", flat=True).first()


def input_items_of(tenant_id: int, response_id: str) -> list[Any] | None:
    return _live(tenant_id, response_id).values_list("input_items", flat=True).first()


def delete(tenant_id: int, response_id: str) -> bool:
    deleted, _ = _live(tenant_id, response_id).delete()
    return deleted > 0


def purge_expired() -> int:
    """Delete every tenant's responses past their retention (the beat task `llm.purge_stored_responses`)."""
    deleted, _ = StoredResponse.objects.unscoped().filter(expires_at__lte=timezone.now()).delete()
    return deleted
