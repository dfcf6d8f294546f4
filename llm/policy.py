"""What the router needs from the business side (limits, budgets, plans, the usage page's cap banner), declared
as a protocol and registered at start-up by the app that owns it (billing, in its AppConfig.ready); recorded
usage is announced with a signal. llm never imports billing, and a missing registration is an error, never a
silent default (no limits would mean no caps)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# Sent after usage events were stored, once per tenant of a batch, with the tenant's period totals before and
# after the batch: tenant_id, tcu_before, tcu_after, tokens_before, tokens_after (platform-mode tokens).
usage_recorded = Signal()


class Policy(Protocol):
    def limits_for(self, tenant_id: int) -> Any:
        """The tenant's limits: plan, tier, warn/hard TCU, rate limits, concurrency, markup, platform access."""

    def agent_budget_tcu(self, tenant_id: int, agent_id: int) -> int | None:
        """An Agent's monthly TCU budget, or None."""

    def hard_cap_message(self, used: int, cap: int, resets_at: datetime) -> str:
        """The 402 message for the tenant's hard cap."""

    def platform_allowed(self, tenant: Any) -> bool:
        """Whether the tenant's plan includes the platform's own keys."""

    def usage_page_context(self, tenant: Any) -> dict[str, Any]:
        """`caps` and `banner` for the usage page."""


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
