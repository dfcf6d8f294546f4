"""What the router needs from the business side (limits, budgets, plans, managed tiers, the usage page's cap
banner), declared as a protocol and registered at start-up by the app that owns it (billing, in its
AppConfig.ready); recorded usage is announced with a signal. llm never imports billing, and a missing registration
is an error, never a silent default (no limits would mean no caps)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

if TYPE_CHECKING:
    from tenants.models import Tenant

# Sent after usage events were stored, once per tenant of a batch, with the tenant's period totals before and
# after the batch: tenant_id, tcu_before, tcu_after (every mode), platform_tcu_before, platform_tcu_after
# (platform-mode TCU), tokens_before, tokens_after (platform-mode tokens).
usage_recorded = Signal()


class Limits(Protocol):
    """What admission and settlement read of a tenant's limits (billing's `caps.Limits` is one)."""

    @property
    def own_hard_tcu(self) -> int | None:
        """The tenant's own monthly hard cap in TCU over every call, every mode (None = none; 0 blocks all)."""

    @property
    def platform_hard_tcu(self) -> int:
        """The platform's guardrail: monthly TCU of platform-mode calls (0 blocks every platform call)."""

    @property
    def rpm_tenant(self) -> int | None: ...
    @property
    def rpm_key(self) -> int | None: ...
    @property
    def max_concurrency(self) -> int | None: ...
    @property
    def monthly_request_cap(self) -> int | None: ...
    @property
    def markup(self) -> Decimal:
        """Billed = cost * (1 + markup), for platform-mode calls."""

    @property
    def platform_allowed(self) -> bool: ...
    @property
    def platform_block_reason(self) -> str:
        """User-facing text when platform mode is not allowed."""


@dataclass(frozen=True, slots=True)
class ManagedAccess:
    """A managed agent's tier, as resolution needs it: which platform models it may reach."""

    tier: str  # "starter"
    name: str  # "Starter": what customers see
    models: tuple[str, ...]  # catalog ids; models[0] is what `default` means
    # Not empty while the tier is paused (a payment overdue past the grace period): the user-facing reason.
    blocked_reason: str = ""


class Policy(Protocol):
    def limits_for(self, tenant_id: int) -> Limits:
        """The tenant's limits: plan, tier, warn/hard TCU, rate limits, concurrency, markup, platform access."""

    def agent_budget_tcu(self, tenant_id: int, agent_id: int) -> int | None:
        """An Agent's monthly TCU budget, or None."""

    def hard_cap_message(self, used: int, cap: int, resets_at: datetime, *, scope: str = "tenant") -> str:
        """The 402 message for a tenant-level cap: its own ("tenant") or the platform's guardrail ("platform")."""

    def platform_allowed(self, tenant: Tenant) -> bool:
        """Whether the tenant's plan includes the platform's own keys."""

    def usage_page_context(self, tenant: Tenant) -> dict[str, object]:
        """`caps`, `banner` and `managed_usage` (the managed agents' included tokens and overage this period) for
        the usage page."""

    def managed_access(self, tenant_id: int, agent_id: int | None) -> ManagedAccess | None:
        """The agent's managed tier (agent None: the workspace's default agent), or None when not managed."""

    def tiers_allowing(self, model_id: str) -> tuple[str, ...]:
        """Customer names ("Pro", "Ultra") of the offered managed tiers that list the model, cheapest first."""


_policy: Policy | None = None


def register(policy: Policy) -> None:
    global _policy
    _policy = policy


def policy() -> Policy:
    if _policy is None:
        raise ImproperlyConfigured(
            "No limits policy is registered: the billing app must be installed (it "
            "registers one in BillingConfig.ready)."
        )
    return _policy
