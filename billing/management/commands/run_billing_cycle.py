"""run_billing_cycle [--period YYYY-MM]: rollups, cap alerts, overage push to Stripe, reconciliation."""

import json

from django.core.management.base import BaseCommand, CommandError

from billing.cycle import billing_cycle_run
from billing.usage import period_bounds


class Command(BaseCommand):
    help = "What beat runs: usage rollups, cap alerts, overage push to Stripe, reconciliation. Safe to run twice."

    def add_arguments(self, parser):
        parser.add_argument("--period", default=None, help="YYYY-MM (UTC month); default: the current one")
        parser.add_argument("--no-reconcile", action="store_true", help="Skip the reconciliation step")

    def handle(self, *args, period, no_reconcile, **options):
        if period:
            try:
                period_bounds(period)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        report = billing_cycle_run(period=period, reconciliation=not no_reconcile)
        self.stdout.write(json.dumps(report, indent=2, default=str))
        if report.get("push_failures"):
            self.stderr.write(
                f"{len(report['push_failures'])} overage push(es) failed; they are retried next run."
            )
