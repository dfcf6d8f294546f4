"""`openrouter_account`: the workspace's OpenRouter credential, for the "Connect OpenRouter" card (never its key)."""

from __future__ import annotations

from django import template

from llm.config.catalog_data import OPENROUTER
from llm.models import Credential
from tenants.models import Tenant

register = template.Library()


@register.simple_tag
def openrouter_account(tenant: Tenant | None) -> Credential | None:
    if tenant is None:
        return None
    return Credential.objects.for_tenant(tenant).filter(kind=OPENROUTER).order_by("pk").first()
