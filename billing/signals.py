"""Keep billing in step with the tenant's Agents: a deactivated or deleted agent leaves its managed tier, and the
Stripe subscription's items follow (per tier, and per agent on per-agent workspace plans)."""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete

from billing.managed import managed_get, managed_set
from billing.models import Subscription
from billing.tasks import sync_subscription_quantity
from tenants.audit import SYSTEM
from tenants.models import Agent

log = logging.getLogger(__name__)


def _sync(tenant_id: int) -> None:
    try:
        sync_subscription_quantity.delay(tenant_id)
    except (
        Exception
    ):  # eager mode surfaces Stripe trouble here; reconciliation repairs quantity drift nightly
        log.warning("subscription quantity sync for tenant %s failed", tenant_id, exc_info=True)


def _end_managed(agent: Agent) -> None:
    """The agent no longer runs: its managed tier ends (audited; the tier's quantity drops in Stripe)."""
    if managed_get(tenant=agent.tenant, agent=agent) is not None:
        managed_set(tenant=agent.tenant, actor=SYSTEM, agent=agent, tier_slug=None)


def agent_changed(sender, instance: Agent, **kwargs) -> None:
    if kwargs.get("signal") is post_save and not instance.is_active:
        _end_managed(instance)
    if (
        Subscription.objects.for_tenant(instance.tenant_id)
        .filter(plan__price_per_agent_usd__gt=0)
        .exclude(stripe_subscription_id="")
        .exists()
    ):
        transaction.on_commit(partial(_sync, instance.tenant_id))


def agent_deleting(sender, instance: Agent, **kwargs) -> None:
    _end_managed(instance)


def connect() -> None:
    post_save.connect(agent_changed, sender=Agent, dispatch_uid="billing.agent_saved")
    post_delete.connect(agent_changed, sender=Agent, dispatch_uid="billing.agent_deleted")
    pre_delete.connect(agent_deleting, sender=Agent, dispatch_uid="billing.agent_deleting")
