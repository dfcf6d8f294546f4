"""Named routes (`route:NAME`): ordered targets with optional weights, response-cache opt-in, YAML import/export.

A route's first target is the primary, the rest the fallback chain; weights on two or more targets make an
A/B split. Every write is validated first by `llm.serializers` (`RouteSerializer`, `RouteImportSerializer`), for
the API and the pages alike, so a rejected write (or import) changes nothing.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

import yaml
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404

from llm.config import llm_config_doc
from llm.config.preferences import preferences_get
from llm.config.versions import bump_config_version
from llm.models import Credential, Route
from tenants.audit import Actor, audit_record
from tenants.models import Tenant

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_TARGETS = 10
MAX_CACHE_TTL = 7 * 24 * 3600
EXPORT_VERSION = 1
MAX_IMPORT_BYTES = 256 * 1024
MAX_IMPORT_DEPTH = 20
FALLBACK_ON = ("content_policy",)  # opt-in failures a route may fall back on (`Route.fallback_on`)


class TargetInput(TypedDict):
    model: str
    credential: int | None
    weight: int
    params: dict[str, Any]


class RouteInput(TypedDict):
    """A route as `llm.serializers.RouteSerializer` validated it (every field, ready to store)."""

    name: str
    description: str
    targets: list[TargetInput]
    cache_ttl_seconds: int | None
    eu_only: bool
    fallback_on: list[str]


class RoutesImport(TypedDict):
    """A routes document as `llm.serializers.RouteImportSerializer` validated it: each route with the stored one
    it replaces (None: a new one), and every name the document lists."""

    plan: list[tuple[Route | None, RouteInput]]
    names: set[str]


def access_route(*, tenant: Tenant, route_id: Any) -> Route:
    """The tenant's route by id (or name), or 404 — the same for another tenant's and a missing one."""
    qs = Route.objects.for_tenant(tenant)
    text = str(route_id)
    if "\x00" in text:  # names no route, and PostgreSQL refuses it in a query
        raise Http404("No such route.")
    try:
        if isinstance(route_id, int) or (
            text.isascii() and text.isdigit() and len(text) <= 18
        ):  # an id, not "²"
            return qs.get(pk=int(route_id))
        return qs.get(name=text)
    except Route.DoesNotExist:
        raise Http404("No such route.") from None


def tenant_mode(tenant: Tenant) -> str:
    """The mode of the tenant's own preferences: what a route target without a credential calls in."""
    prefs = preferences_get(tenant=tenant, agent=None)
    return prefs.mode if prefs is not None else "platform"


def route_json(route: Route, *, credential_names: dict[int, str] | None = None) -> dict[str, Any]:
    names = (
        credential_names
        if credential_names is not None
        else dict(Credential.objects.for_tenant(route.tenant_id).values_list("pk", "name"))
    )
    return {
        "id": route.pk,
        "name": route.name,
        "description": route.description,
        "model": f"route:{route.name}",
        "targets": [
            {
                "model": t["model"],
                "credential": t.get("credential"),
                "credential_name": names.get(t.get("credential")) if t.get("credential") else None,
                "weight": t.get("weight") or 0,
                "params": t.get("params") or {},
            }
            for t in route.targets
        ],
        "weighted": sum(1 for t in route.targets if t.get("weight")) >= 2,
        "cache_ttl_seconds": route.cache_ttl_seconds,
        "eu_only": route.eu_only,
        "fallback_on": list(route.fallback_on or []),
        "created_at": route.created_at,
        "updated_at": route.updated_at,
    }


def _save(route: Route) -> None:
    try:
        with transaction.atomic():
            route.save()
    except IntegrityError:
        raise ValidationError({"name": [f"A route named “{route.name}” exists already."]}) from None


def route_create(*, tenant: Tenant, actor: Actor, data: RouteInput) -> Route:
    """Create a route validated by `llm.serializers.RouteSerializer`."""
    with transaction.atomic():
        route = Route(tenant=tenant, **data)
        _save(route)
        audit_record(tenant=tenant, actor=actor, action="llm.route.create", obj=route, changes=dict(data))
    bump_config_version(tenant.id)
    return route


def route_update(*, route: Route, actor: Actor, data: RouteInput) -> Route:
    """Change a route with values validated by `llm.serializers.RouteSerializer` given the route (complete: a
    PATCH's left-out fields are the route's own, a PUT's the defaults)."""
    changes = {k: v for k, v in data.items() if getattr(route, k) != v}
    with transaction.atomic():
        for key, value in data.items():
            setattr(route, key, value)
        _save(route)
        audit_record(tenant=route.tenant, actor=actor, action="llm.route.update", obj=route, changes=changes)
    bump_config_version(route.tenant_id)
    return route


def route_delete(*, route: Route, actor: Actor) -> None:
    tenant = route.tenant
    with transaction.atomic():
        audit_record(tenant=tenant, actor=actor, action="llm.route.delete", obj=route)
        route.delete()
    bump_config_version(tenant.id)


# --- YAML ------------------------------------------------------------------------------------------------


def routes_export(*, tenant: Tenant) -> str:
    """Every route as YAML; credentials by name (ids do not travel between workspaces), never secrets."""
    names = dict(Credential.objects.for_tenant(tenant).values_list("pk", "name"))
    routes = []
    for route in Route.objects.for_tenant(tenant):
        targets = []
        for t in route.targets:
            item: dict[str, Any] = {"model": t["model"]}
            if t.get("credential"):
                item["credential"] = names.get(t["credential"])
            if t.get("weight"):
                item["weight"] = t["weight"]
            if t.get("params"):
                item["params"] = dict(t["params"])
            targets.append(item)
        entry: dict[str, Any] = {"name": route.name}
        if route.description:
            entry["description"] = route.description
        entry["targets"] = targets
        if route.cache_ttl_seconds:
            entry["cache_ttl_seconds"] = route.cache_ttl_seconds
        if route.eu_only:
            entry["eu_only"] = True
        if route.fallback_on:
            entry["fallback_on"] = list(route.fallback_on)
        routes.append(entry)
    return yaml.safe_dump({"version": EXPORT_VERSION, "routes": routes}, sort_keys=False, allow_unicode=True)


def routes_export_llm_config(*, tenant: Tenant) -> str:
    """Every route as an `llm_config:` document (`llm.config.llm_config_doc`): keys and endpoints by name."""
    by_id = {c.pk: c for c in Credential.objects.for_tenant(tenant)}
    return llm_config_doc.export(list(Route.objects.for_tenant(tenant)), by_id)


class _ImportRefused(Exception):
    def __init__(self, message: str, mark: Any = None):
        line = f"line {mark.line + 1}: " if mark is not None else ""
        super().__init__(line + message)


class _ImportLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases (one alias can stand for a tree of any size: the
    “billion laughs”) and with a bounded nesting depth."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _ImportRefused(
                "anchors and aliases (& and *) are not supported; write each value out.", event.start_mark
            )
        self._depth += 1
        if self._depth > MAX_IMPORT_DEPTH:
            raise _ImportRefused(f"nested more than {MAX_IMPORT_DEPTH} levels deep.", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_document(text: str) -> Any:
    """A routes document parsed, within the bounds; a field error (`yaml`) for anything else. Errors name the
    line, never quote a value of any size."""
    if len(text) > MAX_IMPORT_BYTES or len(text.encode("utf-8", "replace")) > MAX_IMPORT_BYTES:
        raise ValidationError(
            {
                "yaml": [
                    f"The file is larger than {MAX_IMPORT_BYTES // 1024} KB; import the routes "
                    "in several files."
                ]
            }
        )
    try:
        loader = _ImportLoader(text)  # the reader refuses control characters and lone surrogates here already
    except yaml.YAMLError:
        raise ValidationError(
            {"yaml": ["Not valid YAML: it holds characters YAML does not allow (control characters?)."]}
        ) from None
    try:
        return loader.get_single_data()
    except _ImportRefused as exc:
        raise ValidationError({"yaml": [f"Not accepted: {exc}"]}) from None
    except yaml.MarkedYAMLError as exc:
        where = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark is not None else ""
        raise ValidationError(
            {"yaml": [f"Not valid YAML{where}: {exc.problem or exc.context or 'syntax error'}"]}
        ) from None
    except yaml.YAMLError:
        raise ValidationError({"yaml": ["Not valid YAML."]}) from None
    except (ValueError, TypeError, OverflowError):  # e.g. an integer of more than 4300 digits
        raise ValidationError(
            {"yaml": ["Not valid YAML: a value cannot be read (a number too long?)."]}
        ) from None
    finally:
        loader.dispose()


def routes_import(
    *, tenant: Tenant, actor: Actor, data: RoutesImport, replace: bool = False
) -> dict[str, Any]:
    """Create or update the routes of a document validated by `llm.serializers.RouteImportSerializer` (by name);
    with `replace`, delete the ones not in it. All or nothing."""
    created, updated, deleted = [], [], []
    with transaction.atomic():
        for instance, cleaned in data["plan"]:
            if instance is None:
                route = Route(tenant=tenant, **cleaned)
                _save(route)
                created.append(route.name)
            elif any(getattr(instance, k) != v for k, v in cleaned.items()):
                for key, value in cleaned.items():
                    setattr(instance, key, value)
                _save(instance)
                updated.append(instance.name)
        if replace:
            for route in Route.objects.for_tenant(tenant).exclude(name__in=data["names"]):
                route.delete()
                deleted.append(route.name)
        audit_record(
            tenant=tenant,
            actor=actor,
            action="llm.route.import",
            object_type="route",
            object_repr=f"{len(created)} created, {len(updated)} updated, {len(deleted)} deleted",
            changes={"created": created, "updated": updated, "deleted": deleted},
        )
    bump_config_version(tenant.id)
    return {"created": created, "updated": updated, "deleted": deleted}
