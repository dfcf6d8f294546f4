"""Seed the plans (free, the managed tiers starter/pro/ultra, enterprise) and the billing beat schedule.

Existing rows are left alone (admins may have edited them); only missing plans and schedules are created.
"""

from decimal import Decimal

from django.db import migrations

PLANS = [
    {
        "slug": "free",
        "name": "Free",
        "sort_order": 0,
        "description": "Bring your own provider keys (BYOK) or your own endpoint.",
        "platform_allowed": False,
        "tier": "",
        "rpm_tenant": 60,
        "rpm_key": 60,
        "max_concurrency": 20,
        "monthly_request_cap": 100_000,
    },
    {
        "slug": "starter",
        "name": "Economy",
        "sort_order": 10,
        "description": "Platform-managed budget models; BYOK included.",
        "price_per_agent_usd": Decimal("5.00"),
        "platform_allowed": True,
        "tier": "starter",
        "tier_models": ["minimax:minimax-m2.5", "mistral:mistral-medium-latest"],
        "included_tokens": 2_000_000,
        "overage_usd_per_mtok": Decimal("2.00"),
        "rpm_tenant": 120,
        "rpm_key": 60,
        "max_concurrency": 20,
        "monthly_request_cap": 200_000,
    },
    {
        "slug": "pro",
        "name": "Standard",
        "sort_order": 20,
        "description": "Platform-managed balanced models; BYOK included.",
        "price_per_agent_usd": Decimal("10.00"),
        "platform_allowed": True,
        "tier": "pro",
        "tier_models": ["openai:gpt-5-mini", "anthropic:claude-haiku-4.5"],
        "included_tokens": 5_000_000,
        "overage_usd_per_mtok": Decimal("3.00"),
        "rpm_tenant": 300,
        "rpm_key": 120,
        "max_concurrency": 50,
        "monthly_request_cap": 500_000,
    },
    {
        "slug": "ultra",
        "name": "Premium",
        "sort_order": 30,
        "description": "Platform-managed flagship models; BYOK included.",
        "price_per_agent_usd": Decimal("20.00"),
        "platform_allowed": True,
        "tier": "ultra",
        "tier_models": ["anthropic:claude-sonnet-4.5", "openai:gpt-5"],
        "included_tokens": 10_000_000,
        "overage_usd_per_mtok": Decimal("5.00"),
        "rpm_tenant": 600,
        "rpm_key": 300,
        "max_concurrency": 100,
        "monthly_request_cap": 1_000_000,
    },
    {
        "slug": "enterprise",
        "name": "Enterprise",
        "sort_order": 40,
        "is_public": False,
        "description": "Contract pricing; no request limits (also used for load tests).",
        "platform_allowed": True,
        "tier": "",
        "rpm_tenant": None,
        "rpm_key": None,
        "max_concurrency": None,
        "monthly_request_cap": None,
    },
]

SCHEDULES = [
    # name, task, crontab (minute, hour), description
    (
        "billing: cycle (rollups, alerts, overage push)",
        "billing.run_billing_cycle",
        ("17", "*"),
        "Hourly: rolls usage up, sends missed cap alerts, pushes the running overage to Stripe.",
    ),
    (
        "billing: nightly reconciliation",
        "billing.reconcile",
        ("30", "3"),
        "Nightly: compares rollups, the ledger and Stripe; repairs what is safe, reports the rest.",
    ),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for data in PLANS:
        data = dict(data)
        Plan.objects.get_or_create(slug=data.pop("slug"), defaults=data)
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, (minute, hour), description in SCHEDULES:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        cron, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.create(name=name, task=task, crontab=cron, description=description, enabled=True)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
