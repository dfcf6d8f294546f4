"""createtenant SLUG --owner EMAIL [--name NAME] [--password PW] [--plan PLAN]"""

import getpass
import secrets
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billing.plans import assign_plan
from tenants.models import User
from tenants.services import tenant_create


# In billing, not tenants: `--plan` puts the new tenant on a billing plan, and tenants imports neither llm nor
# billing. The command's name and options are unchanged.
class Command(BaseCommand):
    help = "Create a tenant and its owner user; prints the slug."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="Owner's e-mail (created if new)")
        parser.add_argument("--name", default="")
        parser.add_argument("--password", default=None)
        parser.add_argument("--plan", default=None, help="Billing plan slug (default: free)")
        parser.add_argument("--eu-only", action="store_true")

    def handle(self, *args, slug, owner, name, password, plan, eu_only, **options):
        email = owner.strip().lower()
        user = User.objects.filter(email=email).first()
        if user is None and password is None:
            if sys.stdin.isatty():
                password = getpass.getpass(f"Password for {email}: ")
            else:
                password = secrets.token_urlsafe(18)
        try:
            with transaction.atomic():
                if user is None:
                    user = User.objects.create_user(email=email, password=password)
                tenant = tenant_create(slug=slug, name=name or slug, owner=user, eu_only=eu_only)
                assign_plan(tenant=tenant, plan_slug=plan)  # free is the default
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        self.stdout.write(tenant.slug)
