"""Provider account linking pages: "Connect OpenRouter" (OAuth PKCE) instead of pasting a key.

`openrouter_connect` (POST, owners and admins) keeps a fresh PKCE verifier in the session, bound to the workspace,
and sends the person to OpenRouter; `openrouter_callback` exchanges the code OpenRouter sends back for a key and
stores it as the workspace's OpenRouter credential (a new one, or a new key on the one it has: a rotation). The
verifier is single-use and expires; a callback for another workspace or without a pending link changes nothing.
"""

from __future__ import annotations

import time

from django.contrib import messages
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import ValidationError

from llm.config import credentials, openrouter_oauth
from llm.config.catalog_data import OPENROUTER
from llm.models import Credential
from llm.serializers import CredentialWriteSerializer
from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.http import TenantRequest
from tenants.roles import Perm

SESSION_KEY = "openrouter_link"
LINK_TTL_SECONDS = 15 * 60


@require_POST
@tenant_required(Perm.MANAGE_LLM)
def openrouter_connect(request: TenantRequest) -> HttpResponse:
    pkce = openrouter_oauth.new_pkce()
    request.session[SESSION_KEY] = {
        "tenant": request.tenant.id,
        "verifier": pkce.verifier,
        "started": time.time(),
    }
    callback = request.build_absolute_uri(reverse("openrouter_callback"))
    return HttpResponseRedirect(
        openrouter_oauth.authorize_url(callback_url=callback, challenge=pkce.challenge)
    )


@require_GET
@tenant_required(Perm.MANAGE_LLM)
def openrouter_callback(request: TenantRequest) -> HttpResponse:
    pending = request.session.pop(SESSION_KEY, None)
    code = request.GET.get("code", "")
    if not isinstance(pending, dict) or pending.get("tenant") != request.tenant.id:
        messages.error(
            request,
            "No OpenRouter connection was started from this workspace. Use Connect OpenRouter to begin.",
        )
    elif time.time() - float(pending.get("started", 0)) > LINK_TTL_SECONDS:
        messages.error(request, "The OpenRouter sign-in took too long. Connect again to start over.")
    elif not code or len(code) > 1000:
        messages.error(
            request, "OpenRouter did not send a sign-in code (was access declined?). Nothing changed."
        )
    else:
        try:
            key = openrouter_oauth.exchange_code(code=code, verifier=str(pending["verifier"]))
            credential = _store_key(request, key)
        except openrouter_oauth.LinkFailed as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"OpenRouter connected: the key {credential.api_key_masked} is saved as “{credential.name}”. "
                "Choose OpenRouter models in Configure.",
            )
    return redirect("llm_settings")


def _store_key(request: TenantRequest, key: str) -> Credential:
    """Save the linked key as any pasted BYOK key is saved: through the credential serializer and service."""
    tenant, actor = request.tenant, Actor.from_request(request)
    existing = (
        Credential.objects.for_tenant(tenant).filter(kind=OPENROUTER).order_by("pk").first()
    )  # one OpenRouter account per workspace: linking again rotates its key
    body = {"api_key": key} if existing is not None else {"kind": OPENROUTER, "api_key": key}
    serializer = CredentialWriteSerializer(
        existing, data=body, partial=existing is not None, context={"request": request, "tenant": tenant}
    )
    if not serializer.is_valid():
        raise openrouter_oauth.LinkFailed("OpenRouter's key could not be saved. Try connecting again.")
    try:
        if existing is not None:
            return credentials.credential_update(
                credential=existing, actor=actor, data=serializer.validated_data
            )
        return credentials.credential_create(tenant=tenant, actor=actor, data=serializer.validated_data)
    except (ValidationError, DjangoValidationError):
        raise openrouter_oauth.LinkFailed(
            "OpenRouter's key could not be saved. Try connecting again."
        ) from None
