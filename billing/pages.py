"""The billing page: plan and tier cards, change plan (Stripe-hosted card entry), usage vs included tokens,
overage estimate, caps, invoices. Same services as `/api/billing/*`."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.forms import apply_errors
from tenants.roles import Perm, role_has

from .caps import caps_read, caps_update
from .models import Plan
from .stripe_client import BillingError
from .summary import billing_summary


class CapsForm(forms.Form):
    warn_tcu = forms.IntegerField(label="Warn at (TCU)", min_value=0, required=False,
                                  help_text="One alert per month when crossed. Empty = the plan's default.")
    hard_tcu = forms.IntegerField(label="Hard cap (TCU)", min_value=0, required=False,
                                  help_text="New calls are refused (402) once reached. 100,000 TCU = $1 of list cost.")


@tenant_required()
def billing(request: HttpRequest) -> HttpResponse:
    if not (role_has(request.role, Perm.MANAGE_BILLING) or role_has(request.role, Perm.MANAGE_CAPS)):
        return render(request, "403.html", status=403)
    caps = caps_read(tenant=request.tenant)
    form = CapsForm(request.POST or None, initial={"warn_tcu": caps["warn_tcu"], "hard_tcu": caps["hard_tcu"]})
    if request.method == "POST":
        if not role_has(request.role, Perm.MANAGE_CAPS):
            return render(request, "403.html", status=403)
        if form.is_valid():
            try:
                caps_update(tenant=request.tenant, actor=Actor.from_request(request),
                            warn_tcu=form.cleaned_data["warn_tcu"], hard_tcu=form.cleaned_data["hard_tcu"])
            except ValidationError as exc:
                apply_errors(form, exc)
            else:
                messages.success(request, "Caps saved; they apply to the next call.")
                return redirect("billing")
    summary = billing_summary(tenant=request.tenant)
    plans = Plan.objects.filter(is_public=True, is_active=True).order_by("sort_order")
    return render(request, "billing/billing.html", {
        "s": summary, "form": form, "plans": plans, "can_billing": role_has(request.role, Perm.MANAGE_BILLING),
    }, status=400 if form.errors else 200)


@require_POST
@tenant_required(Perm.MANAGE_BILLING)
def change_plan(request: HttpRequest) -> HttpResponse:
    from .plans import plan_change

    try:
        result = plan_change(tenant=request.tenant, actor=Actor.from_request(request),
                             plan_slug=request.POST.get("plan", ""))
    except (BillingError, ValidationError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", None) or " ".join(getattr(exc, "messages", [str(exc)])))
        return redirect("billing")
    if result.checkout_url:
        return redirect(result.checkout_url)  # Stripe collects the card; the plan applies when it confirms
    messages.success(request, "Plan changed.")
    return redirect("billing")


@require_POST
@tenant_required(Perm.MANAGE_BILLING)
def payment_portal(request: HttpRequest) -> HttpResponse:
    from .stripe_sync import portal_url

    try:
        return redirect(portal_url(request.tenant))
    except BillingError as exc:
        messages.error(request, exc.message)
        return redirect("billing")
