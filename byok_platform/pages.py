"""Pages made of several apps: the dashboard and an agent's page (tenants' objects with llm's usage and settings).

They live here, at the top, because tenants is the bottom app and imports neither llm nor billing."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import HttpResponse
from django.shortcuts import redirect, render

from llm.pages import llm_config_context
from llm.usage.selectors import usage_summary
from tenants import services
from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.forms import AgentEditForm, apply_errors
from tenants.http import TenantRequest
from tenants.models import Agent, ApiKey, Membership
from tenants.roles import Perm, role_has


@tenant_required()
def dashboard(request: TenantRequest) -> HttpResponse:
    tenant = request.tenant
    context: dict[str, object] = {
        "agents": Agent.objects.for_tenant(tenant).count(),
        "keys": ApiKey.objects.for_tenant(tenant).filter(revoked_at__isnull=True).count(),
        "members": Membership.objects.for_tenant(tenant).count(),
    }
    try:
        context["usage"] = usage_summary(tenant=tenant, range_name="30d")["totals"]
    except DatabaseError:  # usage is an extra on this page; never break the dashboard for it
        context["usage"] = None
    context.update(llm_config_context(request))  # the LLM card and its configuration modal
    return render(request, "dashboard.html", context)


@tenant_required()
def agent_detail(request: TenantRequest, slug: str) -> HttpResponse:
    agent = services.access_agent(tenant=request.tenant, slug_or_id=slug)
    can_manage = role_has(request.role, Perm.MANAGE_AGENTS)
    form = AgentEditForm(
        request.POST or None,
        initial={"name": agent.name, "description": agent.description, "is_active": agent.is_active},
    )
    if request.method == "POST":
        if not can_manage:
            return render(request, "403.html", {"needed": Perm.MANAGE_AGENTS}, status=403)
        if request.POST.get("action") == "delete":
            services.agent_delete(agent=agent, actor=Actor.from_request(request))
            messages.success(request, f"Agent “{slug}” deleted.")
            return redirect("agents")
        if form.is_valid():
            try:
                services.agent_update(agent=agent, actor=Actor.from_request(request), **form.cleaned_data)
            except ValidationError as exc:
                apply_errors(form, exc)
            else:
                messages.success(request, "Agent saved.")
                return redirect("agent_detail", slug=agent.slug)
    usage = None
    try:
        usage = usage_summary(tenant=request.tenant, range_name="30d", agent=agent)["totals"]
    except DatabaseError:  # usage is an extra here
        usage = None
    return render(
        request,
        "tenants/agent_detail.html",
        {
            "agent": agent,
            "form": form,
            "can_manage": can_manage,
            "usage": usage,
            "keys": agent.api_keys.all(),
        },
        status=400 if form.errors else 200,
    )
