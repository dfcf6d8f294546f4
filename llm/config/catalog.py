"""The model catalog: seeding the approved list, a cached snapshot for the router, and the listing API's read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError

from llm.config import catalog_data
from llm.config.versions import global_version
from llm.models import CatalogModel, Provider

TIERS = ("flagship", "balanced", "fast", "budget")
FILTERS = ("eu", "recommended", "provider:NAME")
_CACHE_TTL = 24 * 3600
# The conservative price (USD per 1M tokens, input and output) when no enabled catalog model has one: the
# platform default's list price.
HIGHEST_PRICES_FALLBACK = (Decimal(3), Decimal(15))


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    id: str
    name: str
    protocol: str
    default_base_url: str
    docs_url: str
    eu_region_available: bool
    sort_order: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    provider: str
    name: str
    native_model_id: str
    openrouter_model_id: str
    input_usd_per_mtok: Decimal | None
    output_usd_per_mtok: Decimal | None
    context_length: int | None
    max_output_tokens: int | None
    capabilities: tuple[str, ...]
    eu_hosted: bool
    recommended: bool
    tier: str
    enabled: bool
    sort_order: int
    # The prompt cache's prices; None: the input price.
    cache_read_usd_per_mtok: Decimal | None = None
    cache_write_usd_per_mtok: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    providers: dict[str, ProviderInfo]
    models: dict[str, ModelInfo]  # every model, disabled ones too (the router names them in errors)

    def model(self, model_id: str) -> ModelInfo | None:
        return self.models.get(model_id)

    def by_openrouter_id(self, openrouter_id: str) -> ModelInfo | None:
        for m in self.models.values():
            if m.openrouter_model_id == openrouter_id:
                return m
        return None

    def highest_prices(self) -> tuple[Decimal, Decimal]:
        """The highest input and output prices of the enabled catalog: the conservative price of an OpenRouter
        model outside the catalog, at which its calls are reserved, and metered when OpenRouter reports no cost."""
        priced = [
            m
            for m in self.models.values()
            if m.enabled and m.input_usd_per_mtok is not None and m.output_usd_per_mtok is not None
        ]
        if not priced:
            return HIGHEST_PRICES_FALLBACK
        return (
            max(m.input_usd_per_mtok for m in priced if m.input_usd_per_mtok is not None),
            max(m.output_usd_per_mtok for m in priced if m.output_usd_per_mtok is not None),
        )


# --- seeding -------------------------------------------------------------------------------------


@dataclass(slots=True)
class SeedResult:
    created: int = 0
    updated: int = 0
    kept_edits: int = 0  # fields an admin changed that the seed left alone


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        try:
            return a is not None and b is not None and Decimal(str(a)) == Decimal(str(b))
        except ArithmeticError:
            return False
    return a == b


def _columns(model_cls: Any) -> set[str]:
    """The fields a model class has: a data migration's historical class may predate some of the seed's."""
    return {name for f in model_cls._meta.concrete_fields for name in (f.name, f.attname)}


def _seed_rows(model_cls: Any, rows: list[dict[str, Any]], *, force: bool, result: SeedResult) -> None:
    existing = {obj.pk: obj for obj in model_cls.objects.filter(pk__in=[r["id"] for r in rows])}
    columns = _columns(model_cls)
    for row in rows:
        data = {k: v for k, v in row.items() if k != "id" and k in columns}
        obj = existing.get(row["id"])
        if obj is None:
            model_cls.objects.create(
                id=row["id"], seeded_values={k: _jsonable(v) for k, v in data.items()}, **data
            )
            result.created += 1
            continue
        seeded = obj.seeded_values or {}
        changed = []
        for name, value in data.items():
            current = getattr(obj, name)
            if _same(current, value):
                continue
            # A value that differs from what the seed last wrote was edited by an admin: keep it.
            if not force and name in seeded and not _same(current, seeded[name]):
                result.kept_edits += 1
                continue
            setattr(obj, name, value)
            changed.append(name)
        new_seeded = {k: _jsonable(v) for k, v in data.items()}
        if changed or new_seeded != seeded:
            obj.seeded_values = new_seeded
            obj.save()
            if changed:
                result.updated += 1


def seed_catalog(*, force: bool = False, provider_model: Any = None, catalog_model: Any = None) -> SeedResult:
    """Load or update the approved catalog; never overwrites an admin's edit unless `force`.

    The data migration passes its historical model classes; everything else uses the real ones.
    """
    if provider_model is None or catalog_model is None:
        provider_model, catalog_model = Provider, CatalogModel
    result = SeedResult()
    _seed_rows(provider_model, catalog_data.PROVIDERS, force=force, result=result)
    _seed_rows(catalog_model, catalog_data.MODELS, force=force, result=result)
    return result


def _unedited(obj: Any) -> bool:
    """The row holds exactly what the seed last wrote (no admin made or changed it)."""
    seeded = obj.seeded_values or {}
    columns = _columns(type(obj))  # a migration's historical class may lack fields the seed wrote since
    return bool(seeded) and all(
        _same(getattr(obj, name), value) for name, value in seeded.items() if name in columns
    )


def catalog_rows_add(*, ids: Collection[str], provider_model: Any, catalog_model: Any) -> int:
    """Create the approved providers and models named in `ids` that a database lacks; returns how many.

    For the data migrations that bring entries added to the approved list to databases seeded before them: a row
    that exists already (seeded, or made by an admin under the same id) is left exactly as it is.
    """
    result = SeedResult()
    for model_cls, rows in ((provider_model, catalog_data.PROVIDERS), (catalog_model, catalog_data.MODELS)):
        wanted = [r for r in rows if r["id"] in ids]
        present = set(model_cls.objects.filter(pk__in=[r["id"] for r in wanted]).values_list("pk", flat=True))
        _seed_rows(model_cls, [r for r in wanted if r["id"] not in present], force=False, result=result)
    return result.created


def catalog_fields_fill(*, fields: Collection[str], catalog_model: Any) -> int:
    """Fill fields new to the catalog (`fields`) on the approved models a database has, from the approved list;
    returns how many rows changed. For the data migration that adds them: a row whose prices an admin edited is
    left alone (its new fields stay empty, which means "as the input price"), and stays so when the catalog is
    seeded again (the approved values are recorded as seeded, so the row reads as edited)."""
    wanted = {r["id"]: r for r in catalog_data.MODELS if any(r.get(f) is not None for f in fields)}
    prices = ("input_usd_per_mtok", "output_usd_per_mtok")
    changed = 0
    for obj in catalog_model.objects.filter(pk__in=list(wanted)):
        seeded = dict(obj.seeded_values or {})
        if not seeded:  # an admin made this row under an approved id: not the seed's
            continue
        edited = any(name not in seeded or not _same(getattr(obj, name), seeded[name]) for name in prices)
        for name in fields:
            if not edited:
                setattr(obj, name, wanted[obj.pk].get(name))
            seeded[name] = _jsonable(wanted[obj.pk].get(name))
        obj.seeded_values = seeded
        obj.save(update_fields=[*fields, "seeded_values"])
        changed += not edited
    return changed


def catalog_rows_remove(*, ids: Collection[str], provider_model: Any, catalog_model: Any) -> int:
    """Delete the providers and models named in `ids` that no admin edited (the reverse of `catalog_rows_add`);
    returns how many. A provider that still has models stays."""
    removed = 0
    for obj in catalog_model.objects.filter(pk__in=list(ids)):
        if _unedited(obj):
            obj.delete()
            removed += 1
    for obj in provider_model.objects.filter(pk__in=list(ids)):
        if _unedited(obj) and not catalog_model.objects.filter(provider_id=obj.pk).exists():
            obj.delete()
            removed += 1
    return removed


# --- the cached snapshot -------------------------------------------------------------------------

_memo_lock = threading.Lock()
_memo: dict[str, Catalog] = {}


def _load() -> Catalog:
    models: dict[str, ModelInfo] = {}
    providers: dict[str, ProviderInfo] = {}
    for m in CatalogModel.objects.select_related("provider"):  # the one query of a cold cache
        p = m.provider
        providers.setdefault(
            p.id,
            ProviderInfo(
                id=p.id,
                name=p.name,
                protocol=p.protocol,
                default_base_url=p.default_base_url,
                docs_url=p.docs_url,
                eu_region_available=p.eu_region_available,
                sort_order=p.sort_order,
            ),
        )
        models[m.id] = ModelInfo(
            id=m.id,
            provider=p.id,
            name=m.name,
            native_model_id=m.native_model_id,
            openrouter_model_id=m.openrouter_model_id,
            input_usd_per_mtok=m.input_usd_per_mtok,
            output_usd_per_mtok=m.output_usd_per_mtok,
            context_length=m.context_length,
            max_output_tokens=m.max_output_tokens,
            capabilities=tuple(m.capabilities),
            eu_hosted=m.eu_hosted,
            recommended=m.recommended,
            tier=m.tier,
            enabled=m.enabled,
            sort_order=m.sort_order,
            cache_read_usd_per_mtok=m.cache_read_usd_per_mtok,
            cache_write_usd_per_mtok=m.cache_write_usd_per_mtok,
        )
    if not models:
        # An empty catalog is never intended (a flushed test database, a skipped migration): load the list.
        seed_catalog()
        return _load()
    return Catalog(providers=providers, models=models)


def get_catalog() -> Catalog:
    """The whole catalog, from this process's memo or the shared cache; one query when both are cold."""
    version = global_version()
    cached = _memo.get(version)
    if cached is not None:
        return cached
    key = f"llm:catalog:{version}"
    snapshot = cache.get(key)
    if snapshot is None:
        snapshot = _load()
        cache.set(key, snapshot, _CACHE_TTL)
    with _memo_lock:
        _memo.clear()
        _memo[version] = snapshot
    return snapshot


def forget_memo() -> None:
    with _memo_lock:
        _memo.clear()


# --- the listing API -------------------------------------------------------------------------------


def _float(price: Decimal | None) -> float | None:
    return float(price) if price is not None else None


def _model_json(m: ModelInfo) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "input_usd_per_mtok": float(m.input_usd_per_mtok) if m.input_usd_per_mtok is not None else None,
        "output_usd_per_mtok": float(m.output_usd_per_mtok) if m.output_usd_per_mtok is not None else None,
        "cache_read_usd_per_mtok": _float(m.cache_read_usd_per_mtok),
        "cache_write_usd_per_mtok": _float(m.cache_write_usd_per_mtok),
        "context_length": m.context_length,
        "max_output_tokens": m.max_output_tokens,
        "capabilities": list(m.capabilities),
        "eu_hosted": m.eu_hosted,
        "recommended": m.recommended,
        "tier": m.tier,
    }


def model_json(model_id: str) -> dict[str, Any] | None:
    m = get_catalog().model(model_id)
    return _model_json(m) if m else None


def models_listing(*, filter: str | None = None, tier: str | None = None) -> dict[str, Any]:
    """Enabled catalog models grouped by provider; `filter` is eu | recommended | provider:NAME."""
    snapshot = get_catalog()
    errors: dict[str, list[str]] = {}
    predicate: Callable[[ModelInfo], bool] | None = None
    if filter:
        if filter == "eu":

            def predicate(m: ModelInfo) -> bool:
                return m.eu_hosted
        elif filter == "recommended":

            def predicate(m: ModelInfo) -> bool:
                return m.recommended
        elif filter.startswith("provider:") and filter[9:]:
            name = filter[9:].lower()
            if name not in snapshot.providers:
                known = ", ".join(sorted(snapshot.providers))
                errors["filter"] = [f"Unknown provider “{name}”. Known providers: {known}."]

            def predicate(m: ModelInfo) -> bool:
                return m.provider == name
        else:
            errors["filter"] = [f"Unknown filter “{filter}”. Allowed values: {', '.join(FILTERS)}."]
    if tier and tier not in TIERS:
        errors["tier"] = [f"Unknown tier “{tier}”. Allowed values: {', '.join(TIERS)}."]
    if errors:
        raise ValidationError(errors)
    groups: dict[str, list[ModelInfo]] = {}
    for m in snapshot.models.values():
        if not m.enabled or (predicate is not None and not predicate(m)) or (tier and m.tier != tier):
            continue
        groups.setdefault(m.provider, []).append(m)
    providers = []
    count = 0
    for pid in sorted(groups, key=lambda p: (snapshot.providers[p].sort_order, p)):
        models = sorted(groups[pid], key=lambda m: (m.sort_order, m.id))
        count += len(models)
        providers.append(
            {"id": pid, "name": snapshot.providers[pid].name, "models": [_model_json(m) for m in models]}
        )
    return {"count": count, "providers": providers}
