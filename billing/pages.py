"""The billing page: plan and tier cards, change plan (Stripe-hosted card entry), usage vs included tokens,
overage estimate, caps, invoices. Same services as `/api/billing/*`."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.alerts import alert_webhook_read, alert_webhook_set, recent_alerts
from billing.caps import caps_read, caps_update
from billing.models import Plan
from billing.notifications import notification_mark_read, notifications_for
from billing.plans import plan_change
from billing.stripe.client import BillingError
from billing.stripe.sync import portal_url
from billing.summary import billing_summary
from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.forms import apply_errors
from tenants.http import TenantRequest
from tenants.models import User
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
        help_text="Every new call is refused (402) once reached. Empty = no hard cap of your own. "
        "100,000 TCU = $1 of list cost.",
    )


@tenant_required()
def billing(request: TenantRequest) -> HttpResponse:
    if not (role_has(request.role, Perm.MANAGE_BILLING) or role_has(request.role, Perm.MANAGE_CAPS)):
        return render(request, "403.html", status=403)
    caps = caps_read(tenant=request.tenant)
    is_webhook = request.POST.get("action") == "webhook"
    form = CapsForm(
        request.POST if request.method == "POST" and not is_webhook else None,
        initial={"warn_tcu": caps["own_warn_tcu"], "hard_tcu": caps["own_hard_tcu"]},
    )
    webhook_error = new_secret = ""
    if request.method == "POST" and is_webhook:
        if not role_has(request.role, Perm.MANAGE_CAPS):
            return render(request, "403.html", status=403)
        try:
            result = alert_webhook_set(
                tenant=request.tenant, actor=Actor.from_request(request), url=request.POST.get("url", "")
            )
        except ValidationError as exc:
            webhook_error = " ".join(exc.messages)
        else:
            new_secret = result["secret"]  # shown once, in this response only
            messages.success(request, "Alert webhook saved." if result["url"] else "Alert webhook removed.")
    elif request.method == "POST":
        if not role_has(request.role, Perm.MANAGE_CAPS):
            return render(request, "403.html", status=403)
        if form.is_valid():
            try:
                caps_update(
                    tenant=request.tenant,
                    actor=Actor.from_request(request),
                    warn_tcu=form.cleaned_data["warn_tcu"],
                    hard_tcu=form.cleaned_data["hard_tcu"],
                )
            except ValidationError as exc:
                apply_errors(form, exc)
            else:
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
            "plans": plans,
            "can_billing": role_has(request.role, Perm.MANAGE_BILLING),
            "webhook": alert_webhook_read(tenant=request.tenant),
            "webhook_error": webhook_error,
            "new_secret": new_secret,
            "alerts": recent_alerts(tenant=request.tenant, limit=10),
        },
        status=400 if form.errors or webhook_error else 200,
    )


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
