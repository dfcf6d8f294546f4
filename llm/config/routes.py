"""Named routes (`route:NAME`): ordered targets with optional weights, response-cache opt-in, YAML import/export.

A route's first target is the primary, the rest the fallback chain; weights on two or more targets make an
A/B split. Validation is shared by the API and the pages; a rejected write (or import) changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404

from llm.config import credentials
from llm.config.preferences import check_model, check_params
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


def _tenant_mode(tenant: Tenant) -> str:
    from llm.config.preferences import preferences_get

    prefs = preferences_get(tenant=tenant, agent=None)
    return prefs.mode if prefs is not None else "platform"


def route_clean(*, tenant: Tenant, data: dict[str, Any], instance: Route | None = None) -> dict[str, Any]:
    """Validate a route (fields left out keep the instance's values); raise ValidationError({field: [...]})."""
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["Send a JSON object."]})
    errors: dict[str, Any] = {}
    unknown = set(data) - {"name", "description", "targets", "cache_ttl_seconds", "eu_only", "id"}
    for key in _field_names(unknown):
        errors[key] = ["Unknown field."]
    out: dict[str, Any] = {}
    name = data.get("name", instance.name if instance else None)
    if not isinstance(name, str) or not NAME.match(name):
        errors["name"] = ["Use 1–64 lowercase letters, digits, “_” and “-”, e.g. rule_extraction."]
    else:
        clash = Route.objects.for_tenant(tenant).filter(name=name)
        if instance is not None:
            clash = clash.exclude(pk=instance.pk)
        if clash.exists():
            errors["name"] = [f"A route named “{name}” exists already."]
        out["name"] = name
    description = data.get("description", instance.description if instance else "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > 200:
        errors["description"] = ["At most 200 characters."]
    out["description"] = description
    ttl = data.get("cache_ttl_seconds", instance.cache_ttl_seconds if instance else None)
    if ttl in ("", 0):
        ttl = None
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_CACHE_TTL
    ):
        errors["cache_ttl_seconds"] = [f"Enter whole seconds from 1 to {MAX_CACHE_TTL} (or null: no cache)."]
    out["cache_ttl_seconds"] = ttl
    eu_only = data.get("eu_only", instance.eu_only if instance else False)
    if not isinstance(eu_only, bool):
        errors["eu_only"] = ["Must be true or false."]
        eu_only = False
    out["eu_only"] = eu_only
    targets = data.get("targets", instance.targets if instance else None)
    target_errors = _clean_targets(tenant, targets, eu_required=eu_only or tenant.eu_only, out=out)
    if target_errors:
        errors["targets"] = target_errors
    if errors:
        raise ValidationError(errors)
    return out


def _clean_targets(tenant: Tenant, targets: Any, *, eu_required: bool, out: dict[str, Any]) -> list[str]:
    if not isinstance(targets, list) or not targets:
        return ['Give at least one target: [{"model": "provider:model"}, …].']
    if len(targets) > MAX_TARGETS:
        return [f"At most {MAX_TARGETS} targets."]
    mode = _tenant_mode(tenant)
    creds = {c.pk: c for c in Credential.objects.for_tenant(tenant)}
    by_name = {c.name: c for c in creds.values()}
    messages: list[str] = []
    cleaned = []
    for i, spec in enumerate(targets, start=1):
        if isinstance(spec, str):
            spec = {"model": spec}
        if not isinstance(spec, dict):
            messages.append(f"Target {i}: give an object with model, credential, weight and params.")
            continue
        extra = set(spec) - {"model", "credential", "weight", "params"}
        if extra:
            messages.append(f"Target {i}: unknown field(s) {', '.join(_field_names(extra))}.")
        credential = None
        ref = spec.get("credential")
        if ref not in (None, ""):
            if isinstance(ref, bool) or not isinstance(ref, int | str):
                messages.append(f"Target {i}: credential: give the credential's id or name.")
                ref = None
            credential = creds.get(ref) if isinstance(ref, int) else by_name.get(ref) if ref else None
            if (
                credential is None
                and isinstance(ref, str)
                and ref.isascii()
                and ref.isdigit()
                and len(ref) <= 18
            ):
                credential = creds.get(int(ref))
            if credential is None and ref is not None:
                shown = f" “{ref}”" if len(str(ref)) <= 100 else ""
                messages.append(f"Target {i}: no credential{shown} (give its id or name).")
        target_mode = mode
        if credential is not None:
            target_mode = "custom" if credential.kind in credentials.ENDPOINT_KINDS else "byok"
        model_id, m, model_errors = check_model(spec.get("model"), mode=target_mode, eu_required=False)
        messages += [f"Target {i}: {e}" for e in model_errors]
        if not model_errors and eu_required:
            eu = m is not None and m.eu_hosted and not model_id.startswith("openrouter:")
            if target_mode == "custom" and credential is not None:
                eu = bool((credential.config or {}).get("eu_hosted"))
            if not eu:
                messages.append(f"Target {i}: EU data residency is required and {model_id} is not EU-hosted.")
        weight = spec.get("weight", 0)
        if weight is None:
            weight = 0
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 1000:
            messages.append(f"Target {i}: weight is a whole number from 0 to 1000.")
            weight = 0
        params = spec.get("params") or {}
        param_errors: dict[str, list[str]] = {}
        if not isinstance(params, dict) or set(params) - {"temperature", "max_tokens"}:
            messages.append(f"Target {i}: params may set temperature and max_tokens.")
            params = {}
        params = check_params(params, param_errors, max_output=m.max_output_tokens if m is not None else None)
        messages += [f"Target {i}: {e}" for msgs in param_errors.values() for e in msgs]
        cleaned.append(
            {
                "model": model_id,
                "credential": credential.pk if credential else None,
                "weight": weight,
                "params": params,
            }
        )
    if not messages and sum(1 for t in cleaned if t["weight"]) == 1:
        messages.append("An A/B split needs weights on at least two targets (or none at all).")
    out["targets"] = cleaned
    return messages


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
        "created_at": route.created_at,
        "updated_at": route.updated_at,
    }


def routes_list(*, tenant: Tenant) -> list[dict[str, Any]]:
    names = dict(Credential.objects.for_tenant(tenant).values_list("pk", "name"))
    return [route_json(r, credential_names=names) for r in Route.objects.for_tenant(tenant)]


def _save(route: Route) -> None:
    try:
        with transaction.atomic():
            route.save()
    except IntegrityError:
        raise ValidationError({"name": [f"A route named “{route.name}” exists already."]}) from None


def route_create(*, tenant: Tenant, actor: Actor, data: dict[str, Any]) -> Route:
    cleaned = route_clean(tenant=tenant, data=data)
    with transaction.atomic():
        route = Route(tenant=tenant, **cleaned)
        _save(route)
        audit_record(tenant=tenant, actor=actor, action="llm.route.create", obj=route, changes=cleaned)
    bump_config_version(tenant.id)
    return route


def route_update(*, route: Route, actor: Actor, data: dict[str, Any], partial: bool = True) -> Route:
    if not partial:
        data = {"description": "", "cache_ttl_seconds": None, "eu_only": False, **data}
    cleaned = route_clean(tenant=route.tenant, data=data, instance=route)
    changes = {k: v for k, v in cleaned.items() if getattr(route, k) != v}
    with transaction.atomic():
        for key, value in cleaned.items():
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
        routes.append(entry)
    return yaml.safe_dump({"version": EXPORT_VERSION, "routes": routes}, sort_keys=False, allow_unicode=True)


def routes_text(raw: bytes) -> str:
    """An uploaded route file as text: UTF-8 (with or without a byte-order mark), else a field error."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError(
            {"yaml": ["The file is not UTF-8 text; save it as UTF-8 and import it again."]}
        ) from None


def _field_names(keys: Any) -> list[str]:
    """Unknown keys as short names for an error message (a key can be anything a document holds)."""
    names = sorted(str(k)[:40] for k in keys if isinstance(k, str | int) and not isinstance(k, bool))
    return names[:10] + (["…"] if len(names) > 10 else [])


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


def _load_import(text: str) -> Any:
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


def routes_import(*, tenant: Tenant, actor: Actor, text: str, replace: bool = False) -> dict[str, Any]:
    """Create or update routes from YAML (by name); with `replace`, delete the ones not in it. All or nothing.

    Bounded: at most MAX_IMPORT_BYTES, no anchors or aliases, MAX_IMPORT_DEPTH levels; errors name the route and
    field, never quote a value of any size."""
    doc = _load_import(text) if text else None
    if isinstance(doc, list):
        doc = {"routes": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("routes"), list):
        raise ValidationError({"yaml": ["Expected a document with a “routes:” list."]})
    if doc.get("version", EXPORT_VERSION) != EXPORT_VERSION:
        raise ValidationError({"yaml": ["Unsupported version; this server reads version 1."]})
    existing = {r.name: r for r in Route.objects.for_tenant(tenant)}
    errors: dict[str, Any] = {}
    plan: list[tuple[Route | None, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc["routes"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = name if isinstance(name, str) and NAME.match(name) else f"#{i + 1}"
        if label in seen:
            errors[label] = {"name": ["Listed twice."]}
            continue
        seen.add(label)
        instance = existing.get(label)
        try:
            data = dict(entry) if isinstance(entry, dict) else entry
            if instance is not None and isinstance(data, dict):
                data = {"description": "", "cache_ttl_seconds": None, "eu_only": False, **data}
            plan.append((instance, route_clean(tenant=tenant, data=data, instance=instance)))
        except ValidationError as exc:
            errors[label] = exc.message_dict
    if errors:
        raise ValidationError(
            {
                "routes": [
                    f"{label}: {field}: {message}"
                    for label, fields in errors.items()
                    for field, messages in fields.items()
                    for message in messages
                ]
            }
        )
    created, updated, deleted = [], [], []
    with transaction.atomic():
        for instance, cleaned in plan:
            if instance is None:
                route = Route(tenant=tenant, **cleaned)
                _save(route)
                created.append(route.name)
            else:
                if all(getattr(instance, k) == v for k, v in cleaned.items()):
                    continue
                for key, value in cleaned.items():
                    setattr(instance, key, value)
                _save(instance)
                updated.append(instance.name)
        if replace:
            for name, route in existing.items():
                if name not in seen:
                    route.delete()
                    deleted.append(name)
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
