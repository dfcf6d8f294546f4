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

from billing.models import AgentBudget, Plan, Subscription
from billing.subscriptions import ensure_subscription, free_plan, period_of
from llm.calls import hot_cache
from tenants.audit import Actor, audit_record
from tenants.models import Agent, Tenant
from tenants.validators import parse_tcu

log = logging.getLogger(__name__)

LIMITS_SCHEMA = 1  # bump when the cached payload changes shape
LIMITS_TTL = 300
_GENERATION_KEY = "billing:limits-generation"
TOKEN_THRESHOLDS = (50, 80, 100)


@dataclass(frozen=True, slots=True)
class Limits:
    plan: str
    tier: str
    warn_tcu: int
    hard_tcu: int
    rpm_tenant: int | None
    rpm_key: int | None
    max_concurrency: int | None
    monthly_request_cap: int | None
    markup: Decimal  # billed = cost * (1 + markup)
    platform_allowed: bool  # plan allows platform mode AND not past due beyond grace
    platform_block_reason: str  # user-facing text when not allowed
    included_tokens: int


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


def _load(tenant_id: int) -> dict[str, Any]:
    """Everything limits depend on, as plain data (it goes to Redis); time-dependent parts are resolved later."""
    sub = Subscription.objects.for_tenant(tenant_id).select_related("plan").first()
    plan = sub.plan if sub is not None else free_plan()
    env_warn, env_hard = settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD
    warn = env_warn if plan is None or plan.warn_tcu is None else plan.warn_tcu
    hard = env_hard if plan is None or plan.hard_tcu is None else plan.hard_tcu
    if sub is not None and sub.warn_tcu_override is not None:
        warn = sub.warn_tcu_override
    if sub is not None and sub.hard_tcu_override is not None:
        hard = sub.hard_tcu_override
    past_due_since = (
        sub.past_due_since if sub is not None and sub.status == Subscription.Status.PAST_DUE else None
    )
    return {
        "plan": plan.slug if plan else "free",
        "plan_name": plan.name if plan else "Free",
        "tier": plan.tier if plan else "",
        "warn_tcu": int(warn),
        "hard_tcu": int(hard),
        "rpm_tenant": plan.rpm_tenant if plan else 60,
        "rpm_key": plan.rpm_key if plan else 60,
        "max_concurrency": plan.max_concurrency if plan else 20,
        "monthly_request_cap": plan.monthly_request_cap if plan else None,
        "markup": str(plan.markup if plan else Decimal(0)),
        "plan_platform": bool(plan and plan.platform_allowed),
        "past_due_since": past_due_since.timestamp() if past_due_since else None,
        "included_tokens": int(plan.included_tokens if plan else 0),
    }


def _build(data: dict[str, Any], now: datetime | None = None) -> Limits:
    allowed, reason = bool(data["plan_platform"]), ""
    if not allowed:
        reason = (
            f"Your plan ({data['plan_name']}) does not include platform-managed models. Use your own "
            "provider key (BYOK) or a custom endpoint, or choose Economy, Standard or Premium under "
            "Billing → Plan."
        )
    elif data["past_due_since"] is not None:
        since = datetime.fromtimestamp(data["past_due_since"], UTC)
        grace_end = since.timestamp() + settings.BILLING_GRACE_DAYS * 86400
        if (now or datetime.now(UTC)).timestamp() >= grace_end:
            allowed = False
            reason = (
                f"Platform-managed models are paused: a payment has been overdue since {since:%Y-%m-%d}. "
                "Your own keys (BYOK) and custom endpoints keep working. Update the payment method under "
                "Billing → Payment to resume."
            )
    return Limits(
        plan=data["plan"],
        tier=data["tier"],
        warn_tcu=data["warn_tcu"],
        hard_tcu=data["hard_tcu"],
        rpm_tenant=data["rpm_tenant"],
        rpm_key=data["rpm_key"],
        max_concurrency=data["max_concurrency"],
        monthly_request_cap=data["monthly_request_cap"],
        markup=Decimal(data["markup"]),
        platform_allowed=allowed,
        platform_block_reason=reason,
        included_tokens=data["included_tokens"],
    )


def limits_for(tenant_id: int) -> Limits:
    """The tenant's limits: environment < plan < tenant override; from the cache (Redis) when warm."""
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
    """Forget a tenant's cached limits here and in the gateway (its per-process copy)."""
    generation = _generation()
    cache.delete(_limits_key(tenant_id, generation))
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


# --- thresholds -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    name: str  # tcu_warn | tcu_hard | tokens_50 | tokens_80 | tokens_100
    metric: str  # "tcu" | "tokens"
    level: int


def thresholds(limits: Limits) -> list[Threshold]:
    out = []
    if limits.warn_tcu > 0:
        out.append(Threshold("tcu_warn", "tcu", limits.warn_tcu))
    if limits.hard_tcu > 0:
        out.append(Threshold("tcu_hard", "tcu", limits.hard_tcu))
    if limits.tier and limits.included_tokens > 0:
        for pct in TOKEN_THRESHOLDS:
            out.append(Threshold(f"tokens_{pct}", "tokens", limits.included_tokens * pct // 100))
    return out


def crossed(
    limits: Limits, *, tcu_before: int, tcu_after: int, tokens_before: int, tokens_after: int
) -> list[tuple[Threshold, int]]:
    result = []
    for t in thresholds(limits):
        before, after = (tcu_before, tcu_after) if t.metric == "tcu" else (tokens_before, tokens_after)
        if before < t.level <= after:
            result.append((t, after))
    return result


def after_usage(
    *, tenant_id: int, tcu_before: int, tcu_after: int, tokens_before: int, tokens_after: int
) -> None:
    """Called by metering after recorded events: enqueue an alert for each threshold crossed (once each)."""
    hits = crossed(
        limits_for(tenant_id),
        tcu_before=tcu_before,
        tcu_after=tcu_after,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
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


def hard_cap_message(used: int, cap: int, resets_at: datetime) -> str:
    """The 402 text: usage and cap as numbers with the unit, and when the period resets."""
    resets = resets_at.astimezone(UTC) if resets_at.tzinfo else resets_at.replace(tzinfo=UTC)
    return (
        f"Monthly TCU hard cap reached: {used:,} of {cap:,} TCU used. New calls are refused until the period "
        f"resets on {resets:%Y-%m-%d %H:%M} UTC or the cap is raised (Billing → Caps)."
    )


# --- caps services (API, pages) ---------------------------------------------------------------------


def _plan_defaults(plan: Plan | None) -> tuple[int, int]:
    warn = settings.SPEND_ALERT_TCU_WARN if plan is None or plan.warn_tcu is None else plan.warn_tcu
    hard = settings.SPEND_ALERT_TCU_HARD if plan is None or plan.hard_tcu is None else plan.hard_tcu
    return int(warn), int(hard)


def caps_read(*, tenant: Tenant) -> dict[str, Any]:
    sub = Subscription.objects.for_tenant(tenant).select_related("plan").first()
    plan = sub.plan if sub else free_plan()
    plan_warn, plan_hard = _plan_defaults(plan)
    limits = limits_for(tenant.id)
    return {
        "warn_tcu": limits.warn_tcu,
        "hard_tcu": limits.hard_tcu,
        "plan_warn_tcu": plan_warn,
        "plan_hard_tcu": plan_hard,
        "warn_overridden": bool(sub and sub.warn_tcu_override is not None),
        "hard_overridden": bool(sub and sub.hard_tcu_override is not None),
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


def caps_update(*, tenant: Tenant, actor: Actor, warn_tcu: Any, hard_tcu: Any) -> dict[str, Any]:
    """Set the tenant's warn/hard caps (None = back to the plan's default); audited; effective at once.

    Lowering is always allowed; on plans with platform-managed spend the hard cap cannot be raised past the plan's
    ceiling (its default hard cap), unless a platform admin already set it higher."""
    errors: dict[str, list[str]] = {}
    warn = _validate_tcu("warn_tcu", warn_tcu, errors)
    hard = _validate_tcu("hard_tcu", hard_tcu, errors)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        sub = ensure_subscription(tenant, lock=True)
        plan_warn, plan_hard = _plan_defaults(sub.plan)
        eff_warn = plan_warn if warn is None else warn
        eff_hard = plan_hard if hard is None else hard
        current_hard = plan_hard if sub.hard_tcu_override is None else sub.hard_tcu_override
        if sub.plan.platform_allowed and eff_hard > max(plan_hard, current_hard):
            # The cap also guards what the platform pays for: lowering is free, raising stops at the plan's
            # ceiling (a platform admin sets more in Django admin).
            raise ValidationError(
                {
                    "hard_tcu": [
                        f"Your plan ({sub.plan.name}) allows a hard cap of at most "
                        f"{plan_hard:,} TCU; choose {plan_hard:,} or less, or ask us "
                        "for a higher limit."
                    ]
                }
            )
        if eff_warn > eff_hard:
            raise ValidationError(
                {"warn_tcu": [f"The warn level ({eff_warn:,}) cannot be above the hard cap ({eff_hard:,})."]}
            )
        before = {"warn_tcu": sub.warn_tcu_override, "hard_tcu": sub.hard_tcu_override}
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
