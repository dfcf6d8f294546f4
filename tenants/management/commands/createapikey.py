"""createapikey SLUG [--name N] [--scopes gateway,manage] [--agent AGENT] [--allow openai:*,route:NAME]"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from tenants.audit import SYSTEM
from tenants.keys import apikey_create
from tenants.models import Tenant
from tenants.services import access_agent


class Command(BaseCommand):
    help = "Create a tenant API key; prints the full key alone on the last line (shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--scopes", default="gateway")
        parser.add_argument("--agent", default=None, help="Agent slug or id of this tenant")
        parser.add_argument(
            "--allow",
            default="",
            help="Comma-separated models and routes the key may call (openai:*, route:NAME, default); none = any",
        )

    def handle(self, *args, slug, name, scopes, agent, allow, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant “{slug}”.")
        bound = None
        if agent:
            try:
                bound = access_agent(tenant=tenant, slug_or_id=agent)
            except Http404:
                raise CommandError(f"No agent “{agent}” in tenant “{slug}”.") from None
        try:
            key, raw = apikey_create(
                tenant=tenant,
                actor=SYSTEM,
                name=name,
                scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                agent=bound,
                rename_if_taken=True,  # scripts create a key on every run; the name printed is the one given
                allowed_models=allow,
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        self.stdout.write(
            f"Created key “{key.name}” ({key.masked}) with scopes {','.join(key.scopes)}; "
            "it is shown only once:"
        )
        self.stdout.write(raw)
