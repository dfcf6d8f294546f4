"""The billing page: plan and tier cards, change plan (Stripe-hosted card entry), usage vs included tokens,
overage estimate, caps, invoices, and managed LLM for the workspace's default agent. Same services as
`/api/billing/*`; the managed LLM form here is also the one on an agent's page (`byok_platform/pages.py`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.alerts import alert_webhook_read, alert_webhook_set, recent_alerts
from billing.caps import caps_read, caps_update, needs_confirm, tcu_in_usd
from billing.managed import managed_get
from billing.models import ManagedTier, Plan
from billing.notifications import notification_mark_read, notifications_for
from billing.plans import ManagedChange, managed_change, plan_change
from billing.stripe.client import NOT_CONFIGURED_MESSAGE, BillingError, stripe_configured
from billing.stripe.sync import portal_url
from billing.summary import billing_summary, managed_usage
from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.forms import apply_errors
from tenants.http import TenantRequest
from tenants.models import Agent, User
from tenants.roles import Perm, role_has
from tenants.validators import MAX_TCU


class CapsForm(forms.Form):
    """The tenant's own caps: every metered call counts, in every mode (own keys included)."""

    warn_tcu = forms.IntegerField(
        label="Warn at (TCU)",
        min_value=0,
        max_value=MAX_TCU,
        required=False,
        help_text="One alert per month when crossed. Empty = no warn level of your own.",
    )
    hard_tcu = forms.IntegerField(
        label="Hard cap (TCU)",
        min_value=0,
        max_value=MAX_TCU,
        required=False,
        help_text="Every new call that costs anything is refused (402) once reached. Empty = no hard cap of "
        "your own. 100,000 TCU = $1 of list cost.",
    )
    # Asked for only when the service says the hard cap would refuse paid calls at once (see caps_update).
    confirm = forms.BooleanField(
        label="Yes, set this hard cap: refuse every paid call from now on", required=False
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("warn_tcu", "hard_tcu"):
            self.fields[name].widget.attrs.update({"placeholder": "plan default", "inputmode": "numeric"})

    @property
    def asks_confirm(self) -> bool:
        """Show the confirmation box: the service asked for it, or the user already ticked it."""
        return bool(self.data.get("confirm")) or any(
            e.code == "confirm" for e in self.errors.as_data().get("hard_tcu", [])
        )


def cap_sources(caps: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per field, whether a cap of the tenant's own is set and what applies without it (the plan's default)."""
    guardrail = {"warn_tcu": caps["platform_warn_tcu"], "hard_tcu": caps["platform_hard_tcu"]}
    return {
        name: {
            "own": caps[f"own_{name}"],
            "own_usd": tcu_in_usd(caps[f"own_{name}"]) if caps[f"own_{name}"] is not None else None,
            "default": guardrail[name] or None,
            "default_usd": tcu_in_usd(guardrail[name]) if guardrail[name] else None,
        }
        for name in ("warn_tcu", "hard_tcu")
    }


class ManagedForm(forms.Form):
    """Managed LLM for one agent (or the workspace's default agent): on or off, and the tier. Customers see the
    tiers' names, prices and plain descriptions only; the service behind it is the API's PUT
    (`billing.plans.managed_change`), which checks again and has Stripe take the money before a tier applies."""

    enabled = forms.BooleanField(label="Use managed LLM", required=False)
    tier = forms.ChoiceField(label="Plan for this agent", required=False)

    def __init__(self, *args: Any, tiers: list[ManagedTier], **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "managed_%s")  # one page may carry other forms with a `tier` field
        super().__init__(*args, **kwargs)
        self.tiers = tiers
        tier = self.fields["tier"]
        assert isinstance(tier, forms.ChoiceField)
        tier.choices = [("", "—"), *((t.slug, t.name) for t in tiers)]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("enabled") and not data.get("tier") and "tier" not in self.errors:
            self.add_error("tier", f"Choose a plan for managed LLM: {', '.join(t.name for t in self.tiers)}.")
        return data

    @property
    def tier_slug(self) -> str | None:
        """The tier to put the agent on; None turns managed LLM off."""
        return (self.cleaned_data.get("tier") or None) if self.cleaned_data.get("enabled") else None


def offered_tiers() -> list[ManagedTier]:
    return list(ManagedTier.objects.filter(is_active=True))


def _who(agent: Agent | None) -> str:
    return f"“{agent.name}”" if agent is not None else "the workspace's default agent"


def managed_context(
    request: TenantRequest, *, agent: Agent | None, form: ManagedForm | None = None
) -> dict[str, Any]:
    """What the managed LLM card (`templates/billing/_managed_form.html`) shows for one agent (None: the
    workspace's default agent): its tier now, the tiers on offer, and the form for those who may change it (the
    roles that may PUT `/api/agents/{slug}/managed`)."""
    tiers = offered_tiers()
    row = managed_get(tenant=request.tenant, agent=agent)
    if form is None:
        form = ManagedForm(
            initial={"enabled": row is not None, "tier": row.tier.slug if row else ""}, tiers=tiers
        )
    notice = {
        "success": "Payment received: managed LLM is on."
        if row is not None
        else "Payment received: managed LLM turns on as soon as Stripe confirms it (reload in a few seconds).",
        "cancel": "Checkout cancelled: nothing was charged and nothing changed.",
    }.get(request.GET.get("checkout", ""), "")
    return {
        "form": form,
        "tiers": tiers,
        "current": row.tier if row else None,
        "since": row.enabled_at if row else None,
        "agent": agent,
        "who": _who(agent),
        "can_change": role_has(request.role, Perm.MANAGE_CAPS),
        "notice": notice,
        # Without Stripe no paid tier can be taken (turning one off still works): said, not left to fail.
        "payments_ready": stripe_configured(),
    }


def managed_post(
    request: TenantRequest, *, agent: Agent | None, done: str
) -> tuple[ManagedForm, HttpResponse | None]:
    """The posted managed LLM form: a redirect (saved, or to Stripe Checkout to pay first), or None with the form
    carrying its errors (a bad choice, or Stripe's refusal in words the user can act on); nothing changes then.
    The caller has checked the role (Perm.MANAGE_CAPS)."""
    form = ManagedForm(request.POST, tiers=offered_tiers())
    if not form.is_valid():
        return form, None
    try:
        result = managed_change(
            tenant=request.tenant, actor=Actor.from_request(request), agent=agent, tier_slug=form.tier_slug
        )
    except ValidationError as exc:
        apply_errors(form, exc)
        return form, None
    except BillingError as exc:
        form.add_error(None, exc.message)
        return form, None
    if result.checkout_url:
        return form, redirect(result.checkout_url)  # Stripe collects the card; the webhook turns the tier on
    messages.success(request, managed_message(result, agent))
    return form, redirect(done)


def managed_message(result: ManagedChange, agent: Agent | None) -> str:
    if not result.changed:
        return "Nothing changed."
    if result.managed is None:
        return f"Managed LLM is off for {_who(agent)}: it uses your own key (BYOK) from the next call."
    tier = result.managed.tier
    return f"Managed LLM {tier.name} (${tier.price_usd:.0f}/mo) is on for {_who(agent)}."


@tenant_required()
def billing(request: TenantRequest) -> HttpResponse:
    if not (role_has(request.role, Perm.MANAGE_BILLING) or role_has(request.role, Perm.MANAGE_CAPS)):
        return render(request, "403.html", status=403)
    # Every form posted here changes caps, the alert webhook or managed LLM: Perm.MANAGE_CAPS (the plan and the
    # payment portal post to their own views).
    action = request.POST.get("action", "caps") if request.method == "POST" else ""
    if action and not role_has(request.role, Perm.MANAGE_CAPS):
        return render(request, "403.html", {"needed": Perm.MANAGE_CAPS}, status=403)
    caps = caps_read(tenant=request.tenant)
    form = CapsForm(
        request.POST if action not in ("", "webhook", "managed") else None,
        initial={"warn_tcu": caps["own_warn_tcu"], "hard_tcu": caps["own_hard_tcu"]},
    )
    webhook_error = new_secret = ""
    managed_form = None
    if action == "webhook":
        webhook_error, new_secret = _webhook_post(request)
    elif action == "managed":
        managed_form, done = managed_post(request, agent=None, done=reverse("billing") + "#managed")
        if done is not None:
            return done
    elif action and _caps_saved(request, form):
        messages.success(request, "Caps saved; they apply to the next call.")
        return redirect("billing")
    summary = billing_summary(tenant=request.tenant)
    plans = Plan.objects.filter(is_public=True, is_active=True).order_by("sort_order")
    return render(
        request,
        "billing/billing.html",
        {
            "s": summary,
            "form": form,
            "cap_fields": [{"field": form[name], **source} for name, source in cap_sources(caps).items()],
            "tcu_usd": caps["tcu_usd"],
            "plans": plans,
            "can_billing": role_has(request.role, Perm.MANAGE_BILLING),
            "payments_ready": stripe_configured(),
            "payments_off": NOT_CONFIGURED_MESSAGE,
            "webhook": alert_webhook_read(tenant=request.tenant),
            "webhook_error": webhook_error,
            "new_secret": new_secret,
            "alerts": recent_alerts(tenant=request.tenant, limit=10),
            "managed": managed_context(request, agent=None, form=managed_form),
            "mu": managed_usage(request.tenant, summary),
        },
        status=400 if form.errors or webhook_error or (managed_form and managed_form.errors) else 200,
    )


def _webhook_post(request: TenantRequest) -> tuple[str, str]:
    """Save the alert webhook; returns (error, the new signing secret shown once)."""
    try:
        result = alert_webhook_set(
            tenant=request.tenant, actor=Actor.from_request(request), url=request.POST.get("url", "")
        )
    except ValidationError as exc:
        return " ".join(exc.messages), ""
    messages.success(request, "Alert webhook saved." if result["url"] else "Alert webhook removed.")
    return "", result["secret"]  # shown once, in this response only


def _caps_saved(request: TenantRequest, form: CapsForm) -> bool:
    if not form.is_valid():
        return False
    try:
        caps_update(
            tenant=request.tenant,
            actor=Actor.from_request(request),
            warn_tcu=form.cleaned_data["warn_tcu"],
            hard_tcu=form.cleaned_data["hard_tcu"],
            confirm=form.cleaned_data["confirm"],
        )
    except ValidationError as exc:
        if needs_confirm(exc):
            form.add_error(
                "hard_tcu",
                ValidationError(f"{exc.messages[0]} Tick the box below to set it anyway.", code="confirm"),
            )
        else:
            apply_errors(form, exc)
        return False
    return True


@tenant_required()
def notifications(request: TenantRequest) -> HttpResponse:
    user = request.user if isinstance(request.user, User) else None
    if request.method == "POST":
        notification_mark_read(tenant=request.tenant, user=user, notification_id=request.POST.get("id", ""))
        return redirect("notifications")
    return render(
        request, "billing/notifications.html", {"items": notifications_for(user, request.tenant, limit=100)}
    )


@require_POST
@tenant_required(Perm.MANAGE_BILLING)
def change_plan(request: TenantRequest) -> HttpResponse:
    try:
        result = plan_change(
            tenant=request.tenant, actor=Actor.from_request(request), plan_slug=request.POST.get("plan", "")
        )
    except (BillingError, ValidationError, ValueError) as exc:
        messages.error(
            request, getattr(exc, "message", None) or " ".join(getattr(exc, "messages", [str(exc)]))
        )
        return redirect("billing")
    if result.checkout_url:
        return redirect(result.checkout_url)  # Stripe collects the card; the plan applies when it confirms
    messages.success(request, "Plan changed.")
    return redirect("billing")


@require_POST
@tenant_required(Perm.MANAGE_BILLING)
def payment_portal(request: TenantRequest) -> HttpResponse:
    try:
        return redirect(portal_url(request.tenant))
    except BillingError as exc:
        messages.error(request, exc.message)
        return redirect("billing")
