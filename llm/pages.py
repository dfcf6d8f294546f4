"""Pages of the llm app: the usage dashboard (same selector as `/api/llm/usage`) and its CSV export."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from llm.calls.listing import picker_models, routes_with_reach
from llm.config import routes as route_service
from llm.config.preferences import llm_configured, preferences_read
from llm.models import Route, Thread
from llm.policy import policy
from llm.runtime import assistant as assistant_service
from llm.serializers import RouteImportSerializer, RouteSerializer
from llm.usage.selectors import METRICS, RANGES, usage_summary
from tenants.audit import Actor
from tenants.decorators import tenant_required
from tenants.http import TenantRequest
from tenants.models import User
from tenants.roles import Perm, role_has
from tenants.services import access_agent


def _summary(request: TenantRequest, *, detail: bool = False):
    range_name = request.GET.get("range", "30d")
    if range_name not in RANGES:
        range_name = "30d"
    agent = None
    if request.GET.get("agent"):
        agent = access_agent(tenant=request.tenant, slug_or_id=request.GET["agent"])
    summary = usage_summary(tenant=request.tenant, range_name=range_name, agent=agent, detail=detail)
    return summary, agent


def _chart(summary: dict[str, Any]) -> dict[str, Any]:
    """The usage chart's series: per hour for 24h, else per day, every bucket of the range on the axis."""
    if "by_hour" in summary:
        buckets = summary["by_hour"]
        labels = [datetime.fromisoformat(b["hour"]).strftime("%H:%M") for b in buckets]
        unit = "hour"
    else:
        buckets = _every_day(summary)
        labels = [date.fromisoformat(b["day"]).strftime("%b %-d") for b in buckets]
        unit = "day"
    return {
        "unit": unit,
        "labels": labels,
        "requests": [b["requests"] for b in buckets],
        "cost": [b["cost_usd"] for b in buckets],
    }


def _every_day(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The range's days, those without calls too (zeros), from its first day with calls for "all"."""
    found = {d["day"]: d for d in summary["by_day"]}
    if not found:
        return []
    span = RANGES[summary["range"]]
    today = timezone.now().astimezone(UTC).date()
    day = (timezone.now() - span).astimezone(UTC).date() if span else date.fromisoformat(min(found))
    out = []
    while day <= today:
        out.append(found.get(day.isoformat(), {"day": day.isoformat(), "requests": 0, "cost_usd": 0.0}))
        day += timedelta(days=1)
    return out


@tenant_required(Perm.VIEW_USAGE)
def usage(request: TenantRequest) -> HttpResponse:
    summary, agent = _summary(request)
    extra = policy().usage_page_context(request.tenant)
    caps, banner = extra.get("caps"), extra.get("banner")
    byok_only = bool(summary["by_model"]) and summary["totals"]["billed_usd"] == 0
    return render(
        request,
        "llm/usage.html",
        {
            "summary": summary,
            "t": summary["totals"],
            "agent": agent,
            "ranges": list(RANGES),
            "caps": caps,
            "banner": banner,
            "managed_usage": extra.get("managed_usage"),
            "byok_only": byok_only,
            "chart": _chart(summary),
        },
    )


# The CSV's columns per view; `rows` (the default): one row per day × model × agent.
_CSV_FIELDS = {
    "rows": ("day", "model", "model_name", "mode", "agent", *METRICS),
    "by_day": ("day", *METRICS),
    "by_model": ("model", "label", "mode", "mode_label", "provider", "provider_label", *METRICS),
    "by_agent": ("agent", *METRICS),
}


@tenant_required(Perm.VIEW_USAGE)
def usage_csv(request: TenantRequest) -> HttpResponse:
    """The range's usage as CSV, header first: per day × model × agent by default, or one of the page's
    breakdowns (`view=by_day|by_model|by_agent`)."""
    view = request.GET.get("view", "rows")
    if view not in _CSV_FIELDS:
        raise Http404
    summary, _ = _summary(request, detail=view == "rows")
    rows = summary[view]
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="usage-{summary["range"]}-{view}.csv"'
    writer = csv.DictWriter(response, fieldnames=_CSV_FIELDS[view], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return response


def llm_config_context(request: TenantRequest, agent: Any = None) -> dict[str, Any]:
    """What a page showing the LLM settings and their modal needs (the settings page and the dashboard)."""
    prefs = preferences_read(tenant=request.tenant, agent=agent)
    endpoint = prefs.get("custom_endpoint") or {}
    # The pickers offer, per mode, the models a call could reach now (the modal's own script filters by them).
    callable_models = picker_models(tenant_id=request.tenant.id, agent_id=agent.id if agent else None)
    return {
        "key_display": prefs.get("api_key_masked") or endpoint.get("api_key_masked") or "—",
        "prefs": prefs,
        "agent": agent,
        "can_manage": role_has(request.role, Perm.MANAGE_LLM),
        "config": {"agent": agent.slug if agent else None, "prefs": prefs, "callable": callable_models},
    }


@tenant_required(Perm.VIEW_CONFIG)
def llm_settings(request: TenantRequest) -> HttpResponse:
    """The LLM configuration page; its modal talks to `/api/llm/*` so the validation is the API's own."""
    agent = None
    if request.GET.get("agent"):
        agent = access_agent(tenant=request.tenant, slug_or_id=request.GET["agent"])
    context = llm_config_context(request, agent)
    if agent is None:
        context["broken_routes"] = [r for r in _routes_with_problems(request.tenant) if r["problems"]]
    return render(request, "llm/settings.html", context)


def _routes_with_problems(tenant: Any) -> list[dict[str, Any]]:
    """The routes as the API shows them (`listing.routes_with_reach`), with `problems`: the targets a workspace
    call cannot reach now, and `primary_skipped`."""
    listed = routes_with_reach(tenant.id, list(Route.objects.for_tenant(tenant)))
    for route in listed:
        route["problems"] = [t for t in route["targets"] if t["problem"]]
        route["primary_skipped"] = bool(route["targets"]) and route["targets"][0]["problem"] is not None
    return listed


@tenant_required(Perm.USE_ASSISTANT)
def assistant(request: TenantRequest, thread_id: int | None = None) -> HttpResponse:
    """The in-app assistant: threads on the left, the conversation, a composer; replies stream in by polling."""
    from django.contrib import messages as flash
    from django.core.exceptions import ValidationError
    from django.shortcuts import redirect

    user = request.user
    assert isinstance(user, User)  # tenant_required: a logged-in person
    thread = (
        assistant_service.access_thread(tenant=request.tenant, user=user, thread_id=thread_id)
        if thread_id is not None
        else None
    )
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "new":
            thread = assistant_service.thread_create(
                tenant=request.tenant, user=user, model=request.POST.get("model") or "default"
            )
            return redirect("assistant_thread", thread_id=thread.id)
        if thread is not None and action == "rename":
            try:
                assistant_service.thread_rename(thread=thread, title=request.POST.get("title", ""))
            except ValidationError as exc:
                flash.error(request, " ".join(exc.messages))
            return redirect("assistant_thread", thread_id=thread.id)
        if thread is not None and action == "delete":
            assistant_service.thread_delete(thread=thread, actor=Actor.from_request(request))
            flash.success(request, "Thread deleted.")
            return redirect("assistant")
    threads = Thread.objects.for_tenant(request.tenant).filter(user=user)[:100]
    context = {
        "llm_configured": llm_configured(tenant=request.tenant),
        "can_manage": role_has(request.role, Perm.MANAGE_LLM),
        "threads": threads,
        "thread": thread,
        "model_groups": assistant_service.model_choices(tenant_id=request.tenant.id),
        "history": [assistant_service.message_progress(m) for m in thread.messages.all()] if thread else [],
    }
    return render(request, "llm/assistant.html", context)


def _targets_from_text(text: str) -> list[dict]:
    """One target a line: `provider:model [weight]`; the first is the primary, the rest the fallback chain."""
    targets = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        target: dict = {"model": parts[0]}
        if len(parts) > 1:
            target["weight"] = int(parts[1]) if parts[1].isdigit() else parts[1]
        targets.append(target)
    return targets


def _with_stored_details(typed: list[dict], stored: list[dict]) -> list[dict] | None:
    """The targets of the form with what the text cannot say (a target's credential and params) taken from the
    stored target of the same model, in order; None when the text says what is stored already."""
    if [(t["model"], t.get("weight") or 0) for t in typed] == [
        (t["model"], t.get("weight") or 0) for t in stored
    ]:
        return None
    unused = list(stored)
    for target in typed:
        same = next((s for s in unused if s["model"] == target["model"]), None)
        if same is not None:
            unused.remove(same)
            target.update({k: same[k] for k in ("credential", "params") if same.get(k)})
    return typed


def _targets_to_text(targets: list[dict]) -> str:
    return "\n".join(t["model"] + (f" {t['weight']}" if t.get("weight") else "") for t in targets)


def _route_import(request: TenantRequest, actor: Any) -> dict[str, Any]:
    """The routes document of the form (a file, else the text), checked by the API's serializer, imported."""
    upload = request.FILES.get("file")
    checked = RouteImportSerializer(
        data={"file": upload} if upload else {"yaml": request.POST.get("yaml", "")},
        context={"tenant": request.tenant},
    )
    checked.is_valid(raise_exception=True)
    return route_service.routes_import(
        tenant=request.tenant,
        actor=actor,
        data=checked.validated_data,
        replace=bool(request.POST.get("replace")),
    )


def _route_save(request: TenantRequest, actor: Any, form: dict[str, Any]) -> str:
    """Create or change (form["id"]) the route of the form, checked by the API's serializer; its name."""
    route = route_service.access_route(tenant=request.tenant, route_id=form["id"]) if form["id"] else None
    ttl = form["cache_ttl_seconds"].strip()
    data = {
        "name": form["name"].strip(),
        "description": form["description"],
        "targets": _targets_from_text(form["targets"]),
        "cache_ttl_seconds": int(ttl) if ttl.isascii() and ttl.isdigit() else (ttl or None),
        "fallback_on": ["content_policy"] if form["fallback_on"] == "content_policy" else [],
    }
    if route is not None:
        data["targets"] = _with_stored_details(data["targets"], route.targets)
        if data["targets"] is None:
            del data["targets"]  # as stored: kept, not judged again under today's settings
    checked = RouteSerializer(route, data=data, partial=True, context={"tenant": request.tenant})
    checked.is_valid(raise_exception=True)
    if route is not None:
        route_service.route_update(route=route, actor=actor, data=checked.validated_data)
    else:
        route_service.route_create(tenant=request.tenant, actor=actor, data=checked.validated_data)
    return checked.validated_data["name"]


def _field_errors(exc: Exception) -> dict[str, Any]:
    """A serializer's field errors, or a service's (a name taken meanwhile), as the template shows them."""
    from django.core.exceptions import ValidationError
    from rest_framework.exceptions import ValidationError as InvalidBody

    if isinstance(exc, InvalidBody):
        return exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    assert isinstance(exc, ValidationError)
    return exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}


@tenant_required(Perm.VIEW_CONFIG)
def routes(request: TenantRequest) -> HttpResponse:
    """Named routes: list, create, edit targets and weights, delete, YAML export and import."""
    from django.contrib import messages as flash
    from django.core.exceptions import ValidationError
    from django.shortcuts import redirect
    from rest_framework.exceptions import ValidationError as InvalidBody

    can_manage = role_has(request.role, Perm.MANAGE_LLM)
    errors: dict = {}
    form = {
        "name": "",
        "description": "",
        "targets": "",
        "cache_ttl_seconds": "",
        "id": "",
        "fallback_on": "",
    }
    if request.method == "POST" and not can_manage:
        return render(request, "403.html", {"needed": Perm.MANAGE_LLM, "role": request.role}, status=403)
    if request.method == "POST":
        action = request.POST.get("action")
        actor = Actor.from_request(request)
        try:
            if action in ("export", "export_llm_config"):
                seed = action == "export_llm_config"
                export = route_service.routes_export_llm_config if seed else route_service.routes_export
                response = HttpResponse(export(tenant=request.tenant), content_type="application/yaml")
                filename = "llm-config.yaml" if seed else "routes.yaml"
                response["Content-Disposition"] = f'attachment; filename="{filename}"'
                return response
            if action == "import":
                result = _route_import(request, actor)
                flash.success(request, f"Imported routes: {result}")
                return redirect("routes")
            if action == "delete":
                route_service.route_delete(
                    route=route_service.access_route(tenant=request.tenant, route_id=request.POST.get("id")),
                    actor=actor,
                )
                flash.success(request, "Route deleted.")
                return redirect("routes")
            form = {k: request.POST.get(k, "") for k in form}
            name = _route_save(request, actor, form)
            flash.success(request, f"Route “{name}” saved; call it as model route:{name}.")
            return redirect("routes")
        except (ValidationError, InvalidBody) as exc:
            errors = _field_errors(exc)
    elif request.method == "GET" and request.GET.get("edit"):
        route = route_service.route_json(
            route_service.access_route(tenant=request.tenant, route_id=request.GET["edit"])
        )
        form = {
            "name": route["name"],
            "description": route["description"],
            "targets": _targets_to_text(route["targets"]),
            "cache_ttl_seconds": route["cache_ttl_seconds"] or "",
            "id": route["id"],
            "fallback_on": "content_policy" if "content_policy" in route["fallback_on"] else "",
        }
    return render(
        request,
        "llm/routes.html",
        {
            "routes": _routes_with_problems(request.tenant),
            "form": form,
            "errors": errors,
            "can_manage": can_manage,
        },
        status=400 if errors else 200,
    )
