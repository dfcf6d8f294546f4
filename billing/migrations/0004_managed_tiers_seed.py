"""Seed the managed tiers and move tenants off the old tenant-level plans starter/pro/ultra.

A tenant on one of those plans goes to `free` and gets a ManagedAgent at that tier for each active agent and for
its default agent (agent NULL). The old Plan rows are kept (subscriptions reference plans with PROTECT) but
deactivated. A Stripe subscription on an old plan keeps its id: the items sync / reconciliation swaps its item for
the tier's, with quantity = the agents now managed. Existing tier rows are left alone (admins may have edited
them). The reverse puts such tenants back on the old plan of their highest tier.
"""

from decimal import Decimal

from django.db import migrations

OLD_PLANS = ("starter", "pro", "ultra")

TIERS = [
    {
        "slug": "starter",
        "name": "Starter",
        "internal_name": "Economy",
        "description": "Fast & affordable. Perfect for simple tasks (FAQ, email replies)",
        "popular": False,
        "price_usd": Decimal("5.00"),
        "included_tokens": 2_000_000,
        "overage_usd_per_mtok": Decimal("2.00"),
        "models": ["minimax:minimax-m2.5", "mistral:mistral-small"],
        "sort_order": 10,
    },
    {
        "slug": "pro",
        "name": "Pro",
        "internal_name": "Standard",
        "description": "Smarter responses. Great for content, research, analysis",
        "popular": True,
        "price_usd": Decimal("10.00"),
        "included_tokens": 5_000_000,
        "overage_usd_per_mtok": Decimal("3.00"),
        "models": ["openai:gpt-4o-mini", "anthropic:claude-haiku-4.5"],
        "sort_order": 20,
    },
    {
        "slug": "ultra",
        "name": "Ultra",
        "internal_name": "Premium",
        "description": "Most powerful. For complex tasks (coding, deep research, strategy)",
        "popular": False,
        "price_usd": Decimal("20.00"),
        "included_tokens": 10_000_000,
        "overage_usd_per_mtok": Decimal("5.00"),
        "models": ["anthropic:claude-sonnet-4", "openai:gpt-4o"],
        "sort_order": 30,
    },
]


def seed_tiers(apps, schema_editor):
    ManagedTier = apps.get_model("billing", "ManagedTier")
    for data in TIERS:
        data = dict(data)
        ManagedTier.objects.get_or_create(slug=data.pop("slug"), defaults=data)


def move_tenants(apps, schema_editor):
    """Old tenant-level tier → free + that tier on every active agent and the default agent; plans deactivated.

    Tenant-owned rows go through `_base_manager`: the same code then runs on the historical models and on the
    app's own (the tests' reseeding), whose default manager refuses queries without a tenant in scope."""
    Plan = apps.get_model("billing", "Plan")
    Subscription = apps.get_model("billing", "Subscription")
    ManagedTier = apps.get_model("billing", "ManagedTier")
    ManagedAgent = apps.get_model("billing", "ManagedAgent")
    Agent = apps.get_model("tenants", "Agent")
    AuditEvent = apps.get_model("tenants", "AuditEvent")
    tiers = {t.slug: t for t in ManagedTier.objects.filter(slug__in=OLD_PLANS)}
    free = Plan.objects.filter(slug="free").first()
    subs = (
        Subscription._base_manager.filter(plan__slug__in=OLD_PLANS)
        .select_related("plan")
        .order_by("tenant_id")
    )
    for sub in subs:
        if free is None:
            free, _ = Plan.objects.get_or_create(slug="free", defaults={"name": "Free"})
        old = sub.plan.slug
        tier = tiers[old]
        agent_ids = list(
            Agent._base_manager.filter(tenant_id=sub.tenant_id, is_active=True)
            .order_by("id")
            .values_list("id", flat=True)
        )
        for agent_id in [None, *agent_ids]:
            ManagedAgent._base_manager.get_or_create(
                tenant_id=sub.tenant_id, agent_id=agent_id, ended_at=None, defaults={"tier": tier}
            )
        sub.plan, sub.quantity = free, 1
        sub.save(update_fields=["plan", "quantity"])
        AuditEvent._base_manager.create(
            tenant_id=sub.tenant_id,
            action="billing.managed.migrate",
            object_type="subscription",
            object_id=str(sub.pk),
            object_repr=f"plan of tenant {sub.tenant_id}",
            changes={"plan": [old, "free"], "tier": old, "agents": len(agent_ids), "default_agent": True},
        )
    Plan.objects.filter(slug__in=OLD_PLANS).update(is_active=False)


def move_tenants_back(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    Subscription = apps.get_model("billing", "Subscription")
    ManagedAgent = apps.get_model("billing", "ManagedAgent")
    ManagedTier = apps.get_model("billing", "ManagedTier")
    Plan.objects.filter(slug__in=OLD_PLANS).update(is_active=True)
    plans = {p.slug: p for p in Plan.objects.filter(slug__in=OLD_PLANS)}
    best: dict[int, tuple[int, str]] = {}
    for row in ManagedAgent._base_manager.filter(ended_at__isnull=True).select_related("tier"):
        rank = (row.tier.sort_order, row.tier.slug)
        if row.tier.slug in plans and rank > best.get(row.tenant_id, (-1, "")):
            best[row.tenant_id] = rank
    for sub in Subscription._base_manager.filter(tenant_id__in=best, plan__slug="free"):
        sub.plan = plans[best[sub.tenant_id][1]]
        sub.save(update_fields=["plan"])
    ManagedAgent._base_manager.all().delete()
    ManagedTier.objects.filter(slug__in=[t["slug"] for t in TIERS]).delete()


def forward(apps, schema_editor):
    seed_tiers(apps, schema_editor)
    move_tenants(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_managed_tiers"),
        ("tenants", "0001_initial"),
    ]

    operations = [migrations.RunPython(forward, move_tenants_back)]
