"""createtenant SLUG --owner EMAIL [--name NAME] [--password PW] [--plan PLAN]"""

import getpass
import secrets
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billing.managed import managed_set
from billing.plans import assign_plan, subscription_follow
from billing.stripe.client import BillingError
from billing.subscriptions import FREE, get_tier, plan_choices, tier_choices
from tenants.audit import SYSTEM
from tenants.models import User
from tenants.services import tenant_create


# In billing, not tenants: `--plan` puts the new tenant on a billing plan, and tenants imports neither llm nor
# billing. The command's name and options are unchanged.
class Command(BaseCommand):
    help = (
        "Create a tenant and its owner user; prints the slug. --plan free|enterprise is the workspace plan; "
        "--plan starter|pro|ultra turns managed LLM on at that tier for the workspace's default agent, billed "
        "through Stripe when it is configured."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="Owner's e-mail (created if new)")
        parser.add_argument("--name", default="")
        parser.add_argument("--password", default=None)
        parser.add_argument(
            "--plan",
            default=None,
            help="Workspace plan (free, the default, or enterprise) or a managed tier for the default agent "
            "(starter, pro, ultra)",
        )
        parser.add_argument("--eu-only", action="store_true")

    def handle(self, *args, slug, owner, name, password, plan, eu_only, **options):
        email = owner.strip().lower()
        user = User.objects.filter(email=email).first()
        if user is None and password is None:
            if sys.stdin.isatty():
                password = getpass.getpass(f"Password for {email}: ")
            else:
                password = secrets.token_urlsafe(18)
        tier = get_tier(plan)
        try:
            with transaction.atomic():
                if user is None:
                    user = User.objects.create_user(email=email, password=password)
                tenant = tenant_create(slug=slug, name=name or slug, owner=user, eu_only=eu_only)
                if tier is None:
                    assign_plan(tenant=tenant, plan_slug=plan)  # free is the default
                else:
                    assign_plan(tenant=tenant, plan_slug=FREE)
                    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug=tier.slug)
        except ValidationError as exc:
            messages = exc.message_dict if hasattr(exc, "error_dict") else {"plan": exc.messages}
            if "plan" in messages:
                messages["plan"] = [
                    f"Unknown plan “{str(plan)[:40]}”. Choose a workspace plan "
                    f"({', '.join(plan_choices())}) or a managed tier ({', '.join(tier_choices())})."
                ]
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from None
        if tier is not None:
            try:
                subscription_follow(tenant=tenant)  # the Stripe customer and subscription (when configured)
            except BillingError as exc:
                # The tenant exists; the nightly reconciliation creates what is missing once Stripe answers.
                self.stderr.write(
                    f"Stripe: {exc.message} The subscription will be created by reconciliation."
                )
        self.stdout.write(tenant.slug)
