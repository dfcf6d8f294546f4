"""`manage.py seed_catalog [--force]`: load or update the approved model catalog."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from llm.config.catalog import seed_catalog
from llm.config.versions import bump_config_version


class Command(BaseCommand):
    help = "Load or update the approved model catalog (idempotent; keeps admins' edits unless --force)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Overwrite prices and flags an admin has edited with the approved values.",
        )

    def handle(self, *args, force: bool = False, **options) -> None:
        with transaction.atomic():
            result = seed_catalog(force=force)
        bump_config_version()
        self.stdout.write(
            f"Catalog: {result.created} created, {result.updated} updated, "
            f"{result.kept_edits} admin edits kept."
        )
