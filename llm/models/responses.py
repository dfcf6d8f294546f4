"""StoredResponse: a Responses API answer kept for `GET`/`DELETE /v1/responses/{id}`, its input items and
`previous_response_id` (requests with `store: true`, the default), until the retention ends."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from tenants.scoping import TenantOwned

__all__ = ["StoredResponse"]


class StoredResponse(TenantOwned):
    response_id = models.CharField(max_length=64, unique=True)
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent = models.ForeignKey(
        "tenants.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.JSONField(help_text="The response object as it was answered.")
    input_items = models.JSONField(default=list, help_text="This response's own input items.")
    conversation = models.JSONField(
        default=list,
        help_text="The chat messages through this response's output: what a follow-up continues.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="llm_resp_tenant_created")]

    def __str__(self) -> str:
        return self.response_id
