"""TCU caps and plan limits: what the gateway enforces (`limits_for`), threshold crossings, and the caps services."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction

from billing.models import AgentBudget, ManagedTier, Plan, Subscription
from billing.subscriptions import ensure_subscription, free_plan, live_managed, period_of
from llm.calls import hot_cache
from llm.config.catalog import get_catalog
from llm.limits.budget import used_tcu
from llm.policy import ManagedAccess
from llm.templatetags.money import usd
from tenants.audit import Actor, audit_record
from tenants.models import Agent, Tenant
from tenants.validators import parse_tcu

log = logging.getLogger(__name__)

LIMITS_SCHEMA = 2  # bump when the cached payload changes shape
LIMITS_TTL = 300
_GENERATION_KEY = "billing:limits-generation"
TOKEN_THRESHOLDS = (50, 80, 100)
STARTER_INCLUDED_TOKENS = 2_000_000  # the guardrail's unit when no Starter tier row exists


@dataclass(frozen=True, slots=True)
class Limits:
    plan: str
    tier: str
    # The tenant's own caps (Billing → Caps): all its metered TCU, every mode; None = not set (no such cap).
    own_warn_tcu: int | None
    own_hard_tcu: int | None
    # The platform's guardrail: platform-mode TCU only, sized by what the tenant buys; 0 = none included.
    platform_warn_tcu: int
    platform_hard_tcu: int
    rpm_tenant: int | None
    rpm_key: int | None
    max_concurrency: int | None
    monthly_request_cap: int | None
    markup: Decimal  # billed = cost * (1 + markup)
    platform_allowed: bool  # plan allows platform mode AND not past due beyond grace
    platform_block_reason: str  # user-facing text when not allowed
    included_tokens: int

    @property
    def warn_tcu(self) -> int | None:
        """The warn level that applies: the tenant's own when set, else the guardrail's (None: neither)."""
        if self.own_warn_tcu is not None:
            return self.own_warn_tcu
        return self.platform_warn_tcu or None

    @property
    def hard_tcu(self) -> int | None:
        """The hard cap that applies: the tenant's own when set, else the guardrail (None: neither)."""
        if self.own_hard_tcu is not None:
            return self.own_hard_tcu
        return self.platform_hard_tcu or None


# --- the cached limits ------------------------------------------------------------------------


def _generation() -> int:
    """A global generation in the key: bumping it drops every tenant's cached limits (a plan was edited)."""
    gen = cache.get(_GENERATION_KEY)
    if gen is None:
        cache.add(_GENERATION_KEY, 1, timeout=None)
        gen = cache.get(_GENERATION_KEY) or 1
    return int(gen)


def _limits_key(tenant_id: int, generation: int) -> str:
    return f"billing:limits:v{LIMITS_SCHEMA}:g{generation}:{tenant_id}"


def _agent_budget_key(tenant_id: int, agent_id: int, generation: int) -> str:
    return f"billing:agent-budget:v{LIMITS_SCHEMA}:g{generation}:{tenant_id}:{agent_id}"


def _plan_figures(plan: Plan | None) -> tuple[int, int]:
    """A plan's own warn/hard TCU figures: its fields, else SPEND_ALERT_TCU_WARN / SPEND_ALERT_TCU_HARD."""
    warn = settings.SPEND_ALERT_TCU_WARN if plan is None or plan.warn_tcu is None else plan.warn_tcu
    hard = settings.SPEND_ALERT_TCU_HARD if plan is None or plan.hard_tcu is None else plan.hard_tcu
    return int(warn), int(hard)


def guardrail_tcu(*, tenant_id: int, plan: Plan | None) -> tuple[int, int]:
    """The platform's guardrail on a tenant's platform-mode TCU per month, (warn, hard): what it buys sizes it.

    SPEND_ALERT_TCU_WARN / _HARD are Starter's figures per managed agent. Every tier keeps Starter's ratio of cap to
    allowance, the allowance counted at its worst case: the included tokens all at the highest per-token price among
    the tier's models. So no managed agent is stopped before its included tokens are used, whatever mix of its
    tier's models and of input and output it uses, and overage can accrue up to that ratio (1.25× the worst-case
    allowance with the seeded tiers and defaults). Plus the workspace plan's own figures when the plan itself
    includes platform-managed models (enterprise)."""
    warn, hard = _plan_figures(plan) if plan is not None and plan.platform_allowed else (0, 0)
    tiers = list(live_managed(tenant_id).values_list("tier_id", flat=True))
    if tiers:
        by_id = {t.id: t for t in ManagedTier.objects.all()}
        starter = next((t for t in by_id.values() if t.slug == "starter"), None)
        base = _worst_allowance_usd(starter) if starter is not None else Decimal(0)
        env_warn, env_hard = settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD
        for tier_id in tiers:
            tier = by_id[tier_id]
            scale = (
                _worst_allowance_usd(tier) / base
                if base > 0
                else Decimal(tier.included_tokens) / Decimal(STARTER_INCLUDED_TOKENS)
            )
            warn += int(env_warn * scale)
            hard += int(env_hard * scale)
    return int(warn), int(hard)


def _managed_allowances(tenant_id: int) -> list[int]:
    """The included tokens of each live managed agent's tier."""
    return [int(n) for n in live_managed(tenant_id).values_list("tier__included_tokens", flat=True)]


def _worst_allowance_usd(tier: ManagedTier) -> Decimal:
    """A tier's included tokens all at the highest input or output price among its models (list USD)."""
    catalog = get_catalog()
    prices = [
        price
        for model_id in tier.models or []
        if (m := catalog.model(model_id)) is not None
        for price in (m.input_usd_per_mtok, m.output_usd_per_mtok)
        if price is not None
    ]
    return Decimal(tier.included_tokens) * max(prices, default=Decimal(0)) / Decimal(1_000_000)


def _load(tenant_id: int) -> dict[str, Any]:
    """Everything limits depend on, as plain data (it goes to Redis); time-dependent parts are resolved later."""
    sub = Subscription.objects.for_tenant(tenant_id).select_related("plan").first()
    plan = sub.plan if sub is not None else free_plan()
    platform_warn, platform_hard = guardrail_tcu(tenant_id=tenant_id, plan=plan)
    past_due_since = (
        sub.past_due_since if sub is not None and sub.status == Subscription.Status.PAST_DUE else None
    )
    return {
        "plan": plan.slug if plan else "free",
        "plan_name": plan.name if plan else "Free",
        "tier": plan.tier if plan else "",
        "own_warn_tcu": sub.warn_tcu_override if sub is not None else None,
        "own_hard_tcu": sub.hard_tcu_override if sub is not None else None,
        "platform_warn_tcu": platform_warn,
        "platform_hard_tcu": platform_hard,
        "rpm_tenant": plan.rpm_tenant if plan else 60,
        "rpm_key": plan.rpm_key if plan else 60,
        "max_concurrency": plan.max_concurrency if plan else 20,
        "monthly_request_cap": plan.monthly_request_cap if plan else None,
        "markup": str(plan.markup if plan else Decimal(0)),
        "plan_platform": bool(plan and plan.platform_allowed),
        "past_due_since": past_due_since.timestamp() if past_due_since else None,
        # The allowance alerts (50/80/100 %) watch the plan's and every managed agent's included tokens together.
        "included_tokens": int(plan.included_tokens if plan else 0) + sum(_managed_allowances(tenant_id)),
    }


def _build(data: dict[str, Any], now: datetime | None = None) -> Limits:
    allowed, reason = bool(data["plan_platform"]), ""
    if not allowed:
        reason = (
            f"Your workspace plan ({data['plan_name']}) does not include platform-managed models. Turn on "
            "“Use managed LLM” on the agent's page (Starter, Pro or Ultra), or use your own provider key "
            "(BYOK) or a custom endpoint."
        )
    elif data["past_due_since"] is not None:
        reason = past_due_reason(data["past_due_since"], now)
        allowed = not reason
    own_warn, own_hard = data["own_warn_tcu"], data["own_hard_tcu"]
    return Limits(
        plan=data["plan"],
        tier=data["tier"],
        own_warn_tcu=None if own_warn is None else int(own_warn),
        own_hard_tcu=None if own_hard is None else int(own_hard),
        platform_warn_tcu=int(data["platform_warn_tcu"]),
        platform_hard_tcu=int(data["platform_hard_tcu"]),
        rpm_tenant=data["rpm_tenant"],
        rpm_key=data["rpm_key"],
        max_concurrency=data["max_concurrency"],
        monthly_request_cap=data["monthly_request_cap"],
        markup=Decimal(data["markup"]),
        platform_allowed=allowed,
        platform_block_reason=reason,
        included_tokens=data["included_tokens"],
    )


def past_due_reason(past_due_since: float | None, now: datetime | None = None) -> str:
    """Why platform-managed models are paused ("" when they are not): a payment overdue past the grace period."""
    if past_due_since is None:
        return ""
    since = datetime.fromtimestamp(past_due_since, UTC)
    grace_end = since.timestamp() + settings.BILLING_GRACE_DAYS * 86400
    if (now or datetime.now(UTC)).timestamp() < grace_end:
        return ""
    return (
        f"Platform-managed models are paused: a payment has been overdue since {since:%Y-%m-%d}. "
        "Your own keys (BYOK) and custom endpoints keep working. Update the payment method under "
        "Billing → Payment to resume."
    )


def limits_for(tenant_id: int) -> Limits:
    """The tenant's limits (plan, guardrail, own caps); from the cache (Redis) when warm."""
    key = _limits_key(tenant_id, _generation())
    data = cache.get(key)
    if data is None:
        data = _load(tenant_id)
        cache.set(key, data, LIMITS_TTL)
    return _build(data)


def agent_budget_tcu(tenant_id: int, agent_id: int) -> int | None:
    """An Agent's monthly TCU budget, or None when it has none."""
    key = _agent_budget_key(tenant_id, agent_id, _generation())
    cached = cache.get(key)
    if cached is None:
        value = (
            AgentBudget.objects.for_tenant(tenant_id)
            .filter(agent_id=agent_id)
            .values_list("monthly_tcu", flat=True)
            .first()
        )
        cached = -1 if value is None else int(value)
        cache.set(key, cached, LIMITS_TTL)
    return None if cached < 0 else int(cached)


def invalidate(tenant_id: int) -> None:
    """Forget a tenant's cached limits (and managed access) here and in the gateway (its per-process copy)."""
    generation = _generation()
    cache.delete_many([_limits_key(tenant_id, generation), _managed_key(tenant_id, generation)])
    hot_cache.forget_limits(tenant_id)


def invalidate_all(tenant_ids: list[int] | None = None) -> None:
    """A plan changed: every cached limit is stale (new generation); tell the gateway about `tenant_ids`."""
    try:
        cache.incr(_GENERATION_KEY)
    except ValueError:
        cache.set(_GENERATION_KEY, 2, timeout=None)
    if tenant_ids is None:
        tenant_ids = list(Subscription.objects.unscoped().values_list("tenant_id", flat=True))
    for tenant_id in tenant_ids:
        hot_cache.forget_limits(tenant_id)


# --- managed access (llm's Policy.managed_access and tiers_allowing), cached like the limits -------------


def _managed_key(tenant_id: int, generation: int) -> str:
    return f"billing:managed:v{LIMITS_SCHEMA}:g{generation}:{tenant_id}"


def _tiers_key(generation: int) -> str:
    return f"billing:tiers:v{LIMITS_SCHEMA}:g{generation}"


def _tiers() -> dict[str, dict[str, Any]]:
    """Every tier by slug (inactive ones too: agents already on a tier keep it), as plain data."""
    key = _tiers_key(_generation())
    data = cache.get(key)
    if data is None:
        data = {
            t.slug: {"name": t.name, "models": list(t.models), "active": t.is_active, "order": t.sort_order}
            for t in ManagedTier.objects.all()
        }
        cache.set(key, data, LIMITS_TTL)
    return data


def _managed(tenant_id: int) -> dict[str, Any]:
    """The tenant's managed agents ("" = the default agent → tier slug) and its overdue payment, if any."""
    key = _managed_key(tenant_id, _generation())
    data = cache.get(key)
    if data is None:
        rows = live_managed(tenant_id).values_list("agent_id", "tier__slug")
        # Two columns, not the row: the row also holds the encrypted alert-webhook secret, which a call never
        # needs and which would be decrypted (or fail to be) on every lookup.
        sub = Subscription.objects.for_tenant(tenant_id).values("status", "past_due_since").first()
        past_due = sub["past_due_since"] if sub and sub["status"] == Subscription.Status.PAST_DUE else None
        data = {
            "agents": {str(agent_id or ""): slug for agent_id, slug in rows},
            "past_due_since": past_due.timestamp() if past_due else None,
        }
        cache.set(key, data, LIMITS_TTL)
    return data


def managed_access(tenant_id: int, agent_id: int | None) -> ManagedAccess | None:
    """The agent's managed tier (None: the workspace's default agent), or None when the agent is not managed."""
    data = _managed(tenant_id)
    slug = data["agents"].get(str(agent_id or ""))
    tier = _tiers().get(slug) if slug else None
    if tier is None:
        return None
    return ManagedAccess(
        tier=slug,
        name=tier["name"],
        models=tuple(tier["models"]),
        blocked_reason=past_due_reason(data["past_due_since"]),
    )


def tiers_allowing(model_id: str) -> tuple[str, ...]:
    """Customer names of the offered tiers whose models include `model_id`, in tier order (cheapest first)."""
    tiers = sorted(_tiers().values(), key=lambda t: t["order"])
    return tuple(t["name"] for t in tiers if t["active"] and model_id in t["models"])


# --- thresholds -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    name: str  # tcu_warn | tcu_hard (own caps) | platform_tcu_warn | platform_tcu_hard (guardrail) | tokens_<pct>
    metric: str  # "tcu" (every mode) | "platform_tcu" | "tokens" (platform-mode tokens)
    level: int


def thresholds(limits: Limits) -> list[Threshold]:
    out = []
    if limits.own_warn_tcu:
        out.append(Threshold("tcu_warn", "tcu", limits.own_warn_tcu))
    if limits.own_hard_tcu:
        out.append(Threshold("tcu_hard", "tcu", limits.own_hard_tcu))
    if limits.platform_warn_tcu > 0:
        out.append(Threshold("platform_tcu_warn", "platform_tcu", limits.platform_warn_tcu))
    if limits.platform_hard_tcu > 0:
        out.append(Threshold("platform_tcu_hard", "platform_tcu", limits.platform_hard_tcu))
    if limits.included_tokens > 0:
        for pct in TOKEN_THRESHOLDS:
            out.append(Threshold(f"tokens_{pct}", "tokens", limits.included_tokens * pct // 100))
    return out


@dataclass(frozen=True, slots=True)
class Totals:
    """A tenant's period totals for the thresholds: TCU (every mode), platform-mode TCU, platform tokens."""

    tcu: int = 0
    platform_tcu: int = 0
    tokens: int = 0

    def of(self, metric: str) -> int:
        return {"tcu": self.tcu, "platform_tcu": self.platform_tcu, "tokens": self.tokens}[metric]


def crossed(limits: Limits, *, before: Totals, after: Totals) -> list[tuple[Threshold, int]]:
    result = []
    for t in thresholds(limits):
        if before.of(t.metric) < t.level <= after.of(t.metric):
            result.append((t, after.of(t.metric)))
    return result


def after_usage(
    *,
    tenant_id: int,
    tcu_before: int,
    tcu_after: int,
    tokens_before: int,
    tokens_after: int,
    platform_tcu_before: int = 0,
    platform_tcu_after: int = 0,
) -> None:
    """Called by metering after recorded events: enqueue an alert for each threshold crossed (once each)."""
    hits = crossed(
        limits_for(tenant_id),
        before=Totals(tcu_before, platform_tcu_before, tokens_before),
        after=Totals(tcu_after, platform_tcu_after, tokens_after),
    )
    if not hits:
        return
    # By name: billing.tasks sits above this module (BillingConfig.ready registers it in every process).
    send_threshold_alert = current_app.tasks["billing.send_threshold_alert"]
    period = period_of()
    for threshold, value in hits:
        transaction.on_commit(
            partial(send_threshold_alert.delay, tenant_id, period, threshold.name, value, threshold.level)
        )


def hard_cap_message(used: int, cap: int, resets_at: datetime, *, scope: str = "tenant") -> str:
    """The 402 text of a tenant-level cap: which one, usage and cap as numbers with the unit, when it resets.

    `scope` "tenant" is the tenant's own cap (every call counts), "platform" the platform's guardrail (only
    platform-managed calls count, and only they stop)."""
    resets = resets_at.astimezone(UTC) if resets_at.tzinfo else resets_at.replace(tzinfo=UTC)
    when = f"{resets:%Y-%m-%d %H:%M} UTC"
    if scope == "platform":
        return (
            f"Monthly guardrail on platform-managed models reached: {used:,} of {cap:,} TCU of platform-managed "
            f"calls used. Platform-managed calls are refused until the period resets on {when}; calls with "
            "your own provider keys (BYOK) and custom endpoints keep working. The guardrail grows with the "
            "managed tiers you buy (Billing)."
        )
    return (
        f"Your workspace's monthly TCU hard cap reached: {used:,} of {cap:,} TCU used (all calls, every mode). "
        f"New calls are refused until the period resets on {when} or the cap is raised (Billing → Caps)."
    )


# --- caps services (API, pages) ---------------------------------------------------------------------


def caps_read(*, tenant: Tenant) -> dict[str, Any]:
    """The caps that apply (`warn_tcu`, `hard_tcu`: the tenant's own when set, else the guardrail; None when
    neither), and each source on its own."""
    limits = limits_for(tenant.id)
    return {
        "warn_tcu": limits.warn_tcu,
        "hard_tcu": limits.hard_tcu,
        "own_warn_tcu": limits.own_warn_tcu,
        "own_hard_tcu": limits.own_hard_tcu,
        "platform_warn_tcu": limits.platform_warn_tcu,
        "platform_hard_tcu": limits.platform_hard_tcu,
        # Earlier names, kept: the levels that apply without caps of the tenant's own (the guardrail).
        "plan_warn_tcu": limits.platform_warn_tcu,
        "plan_hard_tcu": limits.platform_hard_tcu,
        "warn_overridden": limits.own_warn_tcu is not None,
        "hard_overridden": limits.own_hard_tcu is not None,
        "tcu_usd": settings.TCU_USD,
    }


def _validate_tcu(name: str, value: Any, errors: dict[str, list[str]]) -> int | None:
    if value is None:
        return None
    try:
        return parse_tcu(value)
    except ValueError as exc:
        errors[name] = [str(exc)]
        return None


def tcu_in_usd(tcu: int) -> Decimal:
    """The list cost in USD that `tcu` TCU stand for (TCU_USD each)."""
    return Decimal(tcu) * Decimal(str(settings.TCU_USD))


def _used_now(tenant_id: int) -> int:
    """TCU used this period as the gateway counts them (0 when its store cannot say: only a cap of 0 then asks)."""
    try:
        return int(used_tcu(tenant_id=tenant_id, seed=False))  # a read: leaves the gateway's counter alone
    except Exception:  # the store is down; the check below still catches a cap of 0
        log.warning("TCU counter unavailable for tenant %s", tenant_id, exc_info=True)
        return 0


def blocking_cap_message(*, hard: int, used: int) -> str:
    """Why a new hard cap needs confirming: at or below what is used already, it refuses paid calls at once."""
    return (
        f"A hard cap of {hard:,} TCU ({usd(tcu_in_usd(hard))}) is at or below the {used:,} TCU "
        f"({usd(tcu_in_usd(used))}) already used this month, so every new call that costs anything would be "
        "refused (402) from now until the month ends (calls that cost nothing still pass)."
    )


def needs_confirm(exc: ValidationError) -> bool:
    """Whether `caps_update` refused only for want of `confirm` (a hard cap that blocks paid calls now)."""
    errors = getattr(exc, "error_dict", {})
    return set(errors) == {"hard_tcu"} and all(e.code == "confirm" for e in errors["hard_tcu"])


def caps_update(
    *, tenant: Tenant, actor: Actor, warn_tcu: Any, hard_tcu: Any, confirm: bool = False
) -> dict[str, Any]:
    """Set the tenant's own warn/hard caps (None = none); audited; effective at once.

    They count all the tenant's metered TCU in every mode (that is how a BYOK tenant caps its own provider
    bill). The platform's guardrail is a separate counter: an own cap below it stops platform-managed calls
    sooner (the tenant lowers it), one above it never lets them past it (the tenant cannot raise it).

    A new hard cap at or below this month's usage would refuse every paid call at once: it is refused with a
    `hard_tcu` error of code `confirm` unless `confirm` is true (the API's `"confirm": true`, the page's box)."""
    errors: dict[str, list[str]] = {}
    warn = _validate_tcu("warn_tcu", warn_tcu, errors)
    hard = _validate_tcu("hard_tcu", hard_tcu, errors)
    if errors:
        raise ValidationError(errors)
    if warn is not None and hard is not None and warn > hard:
        raise ValidationError(
            {"warn_tcu": [f"The warn level ({warn:,}) cannot be above the hard cap ({hard:,})."]}
        )
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)
        before = {"warn_tcu": sub.warn_tcu_override, "hard_tcu": sub.hard_tcu_override}
        if hard is not None and hard != sub.hard_tcu_override and not confirm:
            used = _used_now(tenant.id)
            if hard <= used:
                raise ValidationError(
                    {
                        "hard_tcu": [
                            ValidationError(blocking_cap_message(hard=hard, used=used), code="confirm")
                        ]
                    }
                )
        sub.warn_tcu_override, sub.hard_tcu_override = warn, hard
        sub.save(update_fields=["warn_tcu_override", "hard_tcu_override", "updated_at"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action="billing.caps.update",
            obj=sub,
            object_repr=f"caps of {tenant.slug}",
            changes={"before": before, "after": {"warn_tcu": warn, "hard_tcu": hard}},
        )
        transaction.on_commit(partial(invalidate, tenant.id))
    invalidate(tenant.id)
    return caps_read(tenant=tenant)


def agent_budget_read(*, tenant: Tenant, agent: Agent) -> dict[str, Any]:
    budget = AgentBudget.objects.for_tenant(tenant).filter(agent=agent).first()
    return {"agent": agent.slug, "monthly_tcu": budget.monthly_tcu if budget else None}


def agent_budget_set(*, tenant: Tenant, actor: Actor, agent: Agent, monthly_tcu: Any) -> dict[str, Any]:
    """Set (or clear with None) an Agent's monthly TCU budget; audited; effective at once."""
    errors: dict[str, list[str]] = {}
    value = _validate_tcu("monthly_tcu", monthly_tcu, errors)
    if errors:
        raise ValidationError(errors)
    if agent.tenant_id != tenant.id:
        raise ValidationError({"agent": ["No such agent."]})
    with transaction.atomic():
        if value is None:
            AgentBudget.objects.for_tenant(tenant).filter(agent=agent).delete()
        else:
            AgentBudget.objects.for_tenant(tenant).update_or_create(
                agent=agent, defaults={"monthly_tcu": value}
            )
        audit_record(
            tenant=tenant,
            actor=actor,
            action="billing.agent_budget.update",
            obj=agent,
            changes={"monthly_tcu": value},
        )
    cache.delete(_agent_budget_key(tenant.id, agent.id, _generation()))
    hot_cache.limits.pop(("agent-budget", tenant.id, agent.id))
    return agent_budget_read(tenant=tenant, agent=agent)
