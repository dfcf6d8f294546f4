"""Pages made of several apps: the dashboard and an agent's page (tenants' objects with llm's usage and settings).

They live here, at the top, because tenants is the bottom app and imports neither llm nor billing."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import HttpResponse
from django.shortcuts import redirect, render

from billing.caps import agent_budget_read, agent_budget_set
from llm.pages import llm_config_context
from llm.usage.selectors import usage_summary
from tenants import services
from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.forms import AgentEditForm, apply_errors
from tenants.http import TenantRequest
from tenants.models import Agent, ApiKey, Membership
from tenants.roles import Perm, role_has
from tenants.validators import MAX_TCU


class AgentBudgetForm(forms.Form):
    monthly_tcu = forms.IntegerField(
        label="Monthly budget (TCU)",
        min_value=0,
        max_value=MAX_TCU,
        required=False,
        help_text="Calls made as this agent are refused (402) once its TCU this month reaches it, in every "
        "mode (your own keys too). Empty = no budget. 100,000 TCU = $1 of list cost.",
    )


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
    can_budget = role_has(request.role, Perm.MANAGE_CAPS)
    is_budget = request.method == "POST" and request.POST.get("action") == "budget"
    form = AgentEditForm(
        request.POST if request.method == "POST" and not is_budget else None,
        initial={"name": agent.name, "description": agent.description, "is_active": agent.is_active},
    )
    budget_form = AgentBudgetForm(
        request.POST if is_budget else None,
        initial={"monthly_tcu": agent_budget_read(tenant=request.tenant, agent=agent)["monthly_tcu"]},
    )
    if is_budget:
        if not can_budget:
            return render(request, "403.html", {"needed": Perm.MANAGE_CAPS}, status=403)
        if _budget_saved(request, agent, budget_form):
            messages.success(request, "Budget saved; it applies to the next call.")
            return redirect("agent_detail", slug=agent.slug)
    elif request.method == "POST":
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
            "budget_form": budget_form,
            "can_manage": can_manage,
            "can_budget": can_budget,
            "usage": usage,
            "keys": agent.api_keys.all(),
        },
        status=400 if form.errors or budget_form.errors else 200,
    )


def _budget_saved(request: TenantRequest, agent: Agent, form: AgentBudgetForm) -> bool:
    """Save the agent's budget from the posted form; False with the errors on the form."""
    if not form.is_valid():
        return False
    try:
        agent_budget_set(
            tenant=request.tenant,
            actor=Actor.from_request(request),
            agent=agent,
            monthly_tcu=form.cleaned_data["monthly_tcu"],
        )
    except ValidationError as exc:
        apply_errors(form, exc)
        return False
    return True
