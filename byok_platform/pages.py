"""Pages made of several apps: the dashboard, the agents (with their managed LLM tier and the templates a new one
starts from) and an agent's page (tenants' objects with llm's usage and settings and billing's managed LLM).

They live here, at the top, because tenants is the bottom app and imports neither llm nor billing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from billing.caps import agent_budget_read, agent_budget_set
from billing.managed import managed_for
from billing.models import ManagedTier
from billing.pages import managed_context, managed_message, managed_post, offered_tiers
from billing.plans import managed_change
from billing.stripe.client import BillingError
from byok_platform.agent_templates import TEMPLATES, template_for
from llm.config.preferences import preferences_delete, preferences_read
from llm.pages import llm_config_context
from llm.usage.selectors import usage_summary
from tenants import services
from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.forms import AgentEditForm, AgentForm, apply_errors
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
        "mode (your own keys too). Empty = no budget of its own; the workspace's caps apply either way. "
        "100,000 TCU = $1 of list cost.",
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
        summary = usage_summary(tenant=tenant, range_name="30d")
        context["usage"], context["usage_tests"] = summary["totals"], summary["tests"]
        context["usage_baseline"] = summary["baseline"]
    except DatabaseError:  # usage is an extra on this page; never break the dashboard for it
        context["usage"] = context["usage_tests"] = context["usage_baseline"] = None
    context.update(llm_config_context(request))  # the LLM card and its configuration modal
    return render(request, "dashboard.html", context)


class AgentCreateForm(AgentForm):
    """A new agent, from a template or blank, optionally on a managed tier from the start (paid before it applies)."""

    tier = forms.ChoiceField(label="Managed LLM", required=False)
    template = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, tiers: list[ManagedTier], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tier = self.fields["tier"]
        assert isinstance(tier, forms.ChoiceField)
        tier.choices = [("", "Bring your own key"), *((t.slug, t.name) for t in tiers)]


@tenant_required()
def agents(request: TenantRequest) -> HttpResponse:
    """The agents, which LLM each uses, and a new agent: from a template (name, description and the recommended
    managed tier filled in) or blank. Creating one on a paid tier goes through Stripe like the agent page's form."""
    can_manage = role_has(request.role, Perm.MANAGE_AGENTS)
    tiers = offered_tiers()
    by_slug = {t.slug: t for t in tiers}
    chosen = template_for(
        request.POST.get("template") if request.method == "POST" else request.GET.get("template")
    )
    initial: dict[str, Any] = {}
    if chosen is not None:
        initial = {"slug": chosen.slug, "name": chosen.name, "description": chosen.description}
        initial |= {"template": chosen.key, "tier": chosen.tier if chosen.tier in by_slug else ""}
    form = AgentCreateForm(request.POST or None, initial=initial, tiers=tiers)
    if request.method == "POST":
        if not can_manage:
            return render(request, "403.html", {"needed": Perm.MANAGE_AGENTS}, status=403)
        if form.is_valid() and (done := _agent_created(request, form)) is not None:
            return done
    managed = {row.agent_id: row.tier for row in managed_for(request.tenant) if row.agent_id}
    agent_rows = [(a, managed.get(a.pk)) for a in Agent.objects.for_tenant(request.tenant)]
    return render(
        request,
        "tenants/agents.html",
        {
            "agents": agent_rows,
            "form": form,
            "tiers": tiers,
            "templates": [(t, by_slug.get(t.tier)) for t in TEMPLATES],
            "chosen": chosen,
            "can_manage": can_manage,
            "can_buy": role_has(request.role, Perm.MANAGE_CAPS),
        },
        status=400 if form.errors else 200,
    )


def _agent_created(request: TenantRequest, form: AgentCreateForm) -> HttpResponse | None:
    """Create the agent and, when a tier was chosen, put it on that tier: saved, or off to Stripe Checkout to pay.
    Both or neither: when Stripe refuses, the agent is not created either and the form says why (None)."""
    tier = form.cleaned_data["tier"] or None
    if tier is not None and not role_has(request.role, Perm.MANAGE_CAPS):
        form.add_error("tier", "Only owners, admins and billing members turn on managed LLM.")
        return None
    actor = Actor.from_request(request)
    try:
        with transaction.atomic():
            agent = services.agent_create(
                tenant=request.tenant,
                actor=actor,
                slug=form.cleaned_data["slug"],
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
            )
            result = (
                managed_change(tenant=request.tenant, actor=actor, agent=agent, tier_slug=tier)
                if tier
                else None
            )
    except ValidationError as exc:
        apply_errors(form, exc)
        return None
    except BillingError as exc:
        form.add_error(
            "tier", f"{exc.message} The agent was not created; choose “Bring your own key” to create it now."
        )
        return None
    if result is not None and result.checkout_url:
        return redirect(result.checkout_url)  # Stripe collects the card; back on the agent's page afterwards
    done = f"Agent “{agent.slug}” created."
    messages.success(request, f"{done} {managed_message(result, agent)}" if result is not None else done)
    return redirect("agent_detail", slug=agent.slug)


@tenant_required()
def agent_detail(request: TenantRequest, slug: str) -> HttpResponse:
    agent = services.access_agent(tenant=request.tenant, slug_or_id=slug)
    # A form without an `action` is the settings form (its Save button names it; older clients leave it out).
    action = request.POST.get("action", "save") if request.method == "POST" else ""
    needed = _AGENT_ACTION_PERMS.get(action, Perm.MANAGE_AGENTS)
    if action and not role_has(request.role, needed):
        return render(request, "403.html", {"needed": needed}, status=403)
    form = AgentEditForm(
        request.POST if action and action not in _AGENT_ACTION_PERMS else None,
        initial={
            "name": agent.name,
            "description": agent.description,
            "is_active": agent.is_active,
            "allowed_models": agent.allowed_models,
        },
    )
    budget_form = AgentBudgetForm(
        request.POST if action == "budget" else None,
        initial={"monthly_tcu": agent_budget_read(tenant=request.tenant, agent=agent)["monthly_tcu"]},
    )
    managed_form = None
    if action == "budget" and _budget_saved(request, agent, budget_form):
        messages.success(request, "Budget saved; it applies to the next call.")
        return redirect("agent_detail", slug=agent.slug)
    if action == "managed":
        managed_form, done = managed_post(
            request, agent=agent, done=reverse("agent_detail", args=[agent.slug]) + "#managed"
        )
        if done is not None:
            return done
    if action == "delete":
        services.agent_delete(agent=agent, actor=Actor.from_request(request))
        messages.success(request, f"Agent “{slug}” deleted.")
        return redirect("agents")
    if action == "reset_llm":
        if preferences_delete(tenant=request.tenant, agent=agent, actor=Actor.from_request(request)):
            messages.success(request, f"“{agent.name}” now uses the workspace's LLM settings.")
        return redirect(reverse("agent_detail", args=[agent.slug]) + "#llm")
    if action and action not in _AGENT_ACTION_PERMS and _agent_saved(request, agent, form):
        messages.success(request, "Agent saved.")
        return redirect("agent_detail", slug=agent.slug)
    usage = None
    try:
        usage = usage_summary(tenant=request.tenant, range_name="30d", agent=agent)["totals"]
    except DatabaseError:  # usage is an extra here
        usage = None
    managed = managed_context(request, agent=agent, form=managed_form)
    llm = llm_config_context(request, agent)
    # Inheriting nothing: the workspace has no settings of its own and no managed LLM to fall back on.
    llm["nothing_to_inherit"] = (
        llm["prefs"]["inherited"]
        and not llm["prefs"]["platform_mode_available"]
        and not preferences_read(tenant=request.tenant, agent=None)["saved"]
    )
    return render(
        request,
        "tenants/agent_detail.html",
        {
            # The LLM card and the configuration modal for this agent, opened here so saving comes back here.
            **llm,
            "agent": agent,
            "form": form,
            "budget_form": budget_form,
            "managed": managed,
            "can_edit": role_has(request.role, Perm.MANAGE_AGENTS),
            "can_budget": role_has(request.role, Perm.MANAGE_CAPS),
            "usage": usage,
            "keys": agent.api_keys.all(),
        },
        status=400 if form.errors or budget_form.errors or managed["form"].errors else 200,
    )


# The agent page's forms other than its settings (and delete, Perm.MANAGE_AGENTS), with the right each needs: the
# same as the API's (PUT /api/billing/agents/{slug}/budget, /api/agents/{slug}/managed, DELETE /api/llm/preferences).
_AGENT_ACTION_PERMS = {
    "budget": Perm.MANAGE_CAPS,
    "managed": Perm.MANAGE_CAPS,
    "reset_llm": Perm.MANAGE_LLM,  # as DELETE /api/llm/preferences?agent=SLUG
}


def _agent_saved(request: TenantRequest, agent: Agent, form: AgentEditForm) -> bool:
    """Save the agent's name, description and state from the posted form; False with the errors on the form."""
    if not form.is_valid():
        return False
    try:
        services.agent_update(agent=agent, actor=Actor.from_request(request), **form.cleaned_data)
    except ValidationError as exc:
        apply_errors(form, exc)
        return False
    return True


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


@tenant_required()
def api_reference(request: TenantRequest) -> HttpResponse:
    """The REST API's reference inside the app's layout: Swagger UI from our own static files, on the schema."""
    return render(request, "api_reference.html")
