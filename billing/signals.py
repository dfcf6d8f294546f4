"""Keep the Stripe subscription quantity in step with the tenant's Agents (per-agent plans)."""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from billing.models import Subscription
from billing.tasks import sync_subscription_quantity
from tenants.models import Agent

log = logging.getLogger(__name__)


def _sync(tenant_id: int) -> None:
    try:
        sync_subscription_quantity.delay(tenant_id)
    except (
        Exception
    ):  # eager mode surfaces Stripe trouble here; reconciliation repairs quantity drift nightly
        log.warning("subscription quantity sync for tenant %s failed", tenant_id, exc_info=True)


def agent_changed(sender, instance: Agent, **kwargs) -> None:
    if (
        Subscription.objects.for_tenant(instance.tenant_id)
        .filter(plan__price_per_agent_usd__gt=0)
        .exclude(stripe_subscription_id="")
        .exists()
    ):
        transaction.on_commit(partial(_sync, instance.tenant_id))


def connect() -> None:
    post_save.connect(agent_changed, sender=Agent, dispatch_uid="billing.agent_saved")
    post_delete.connect(agent_changed, sender=Agent, dispatch_uid="billing.agent_deleted")
