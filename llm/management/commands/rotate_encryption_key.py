"""`manage.py rotate_encryption_key [--data-keys]`: re-encrypt every stored secret under the newest key."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from llm.config import encryption


class Command(BaseCommand):
    help = (
        "Re-wrap every tenant data key under the newest key in CRYPTOGRAPHY_KEYS (the first); with "
        "--data-keys also give every tenant a new data key and re-encrypt its credentials. Resumable: "
        "what is already under the newest key is skipped."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--data-keys",
            action="store_true",
            help="Also replace the tenants' data keys (after a leak of the database or a key).",
        )
        parser.add_argument("--batch-size", type=int, default=100)

    def handle(self, *args, data_keys: bool = False, batch_size: int = 100, **options) -> None:
        verbosity = options.get("verbosity", 1)

        def progress(result: encryption.RotationResult) -> None:
            if verbosity > 1:
                self.stdout.write(
                    f"  … {result.data_keys_rewrapped} re-wrapped, "
                    f"{result.credentials_reencrypted} credentials re-encrypted"
                )

        result = encryption.rotate(data_keys=data_keys, batch_size=batch_size, progress=progress)
        self.stdout.write(
            f"Re-encrypted under key {encryption.current_master_id()}: {result.data_keys_rewrapped} data keys re-wrapped, "
            f"{result.data_keys_created} new data keys, {result.credentials_reencrypted} credentials re-encrypted, "
            f"{result.field_values_reencrypted} other encrypted values re-encrypted."
        )
