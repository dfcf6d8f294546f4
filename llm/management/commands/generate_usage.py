"""generate_usage SLUG --events N [--days D] [--agents K]: synthetic UsageEvents for load tests and benchmarks."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from llm.usage.rollups import rollup_pending, vacuum_analyze
from llm.usage.selectors import usage_summary
from tenants.audit import SYSTEM
from tenants.models import Agent, Tenant
from tenants.services import agent_create

MODELS = [
    ("anthropic:claude-sonnet-4.5", "anthropic", 3.0, 15.0),
    ("openai:gpt-5-mini", "openai", 0.25, 2.0),
    ("mistral:mistral-medium-3.1", "mistral", 0.4, 2.0),
    ("google:gemini-2.5-flash", "google", 0.3, 2.5),
]


class Command(BaseCommand):
    help = (
        "Insert synthetic usage events (PostgreSQL: one INSERT … SELECT generate_series), then roll them up."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--events", type=int, default=100_000)
        parser.add_argument("--days", type=int, default=90)
        parser.add_argument("--agents", type=int, default=5)
        parser.add_argument("--no-rollup", action="store_true")

    def handle(self, *args, slug, events, days, agents, no_rollup, **options):
        if connection.vendor != "postgresql":
            raise CommandError("generate_usage needs PostgreSQL (set DATABASE_URL).")
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant “{slug}”.")
        agent_ids = []
        for i in range(agents):
            agent = Agent.objects.for_tenant(tenant).filter(slug=f"load-agent-{i}").first() or agent_create(
                tenant=tenant, actor=SYSTEM, slug=f"load-agent-{i}"
            )
            agent_ids.append(agent.id)
        started = time.monotonic()
        models_sql = "ARRAY[" + ",".join(f"'{m[0]}'" for m in MODELS) + "]"
        providers_sql = "ARRAY[" + ",".join(f"'{m[1]}'" for m in MODELS) + "]"
        in_sql = "ARRAY[" + ",".join(str(m[2]) for m in MODELS) + "]::numeric[]"
        out_sql = "ARRAY[" + ",".join(str(m[3]) for m in MODELS) + "]::numeric[]"
        agents_sql = (
            "ARRAY[" + ",".join(str(a) for a in agent_ids) + "]::bigint[]"
            if agent_ids
            else "ARRAY[]::bigint[]"
        )
        prefix = f"gen-{int(time.time())}-"
        with connection.cursor() as cursor:
            # Only integers and this module's constants are interpolated; the tenant and counts are parameters.
            cursor.execute(
                f"""
                INSERT INTO llm_usageevent (tenant_id, request_id, created_at, agent_id, request_type, mode, provider,
                    model, tier, route, variant, input_tokens, output_tokens, cached_tokens, tokens_estimated,
                    cost_input_usd, cost_output_usd, cost_usd, billed_usd, tcu, latency_ms, ttft_ms,
                    fallback_depth, cached, status, error_kind, http_status)
                SELECT %s, %s || g, now() - (random() * %s * interval '1 day'),
                    CASE WHEN cardinality({agents_sql}) = 0 OR g %% 4 = 0 THEN NULL
                         ELSE ({agents_sql})[1 + g %% greatest(cardinality({agents_sql}), 1)] END,
                    'chat', 'byok', ({providers_sql})[1 + g %% 4], ({models_sql})[1 + g %% 4], '', 'default', '',
                    it, ot, 0, false,
                    it * ({in_sql})[1 + g %% 4] / 1000000, ot * ({out_sql})[1 + g %% 4] / 1000000,
                    it * ({in_sql})[1 + g %% 4] / 1000000 + ot * ({out_sql})[1 + g %% 4] / 1000000, 0,
                    ceil((it * ({in_sql})[1 + g %% 4] + ot * ({out_sql})[1 + g %% 4]) / 1000000 / 0.00001),
                    (50 + random() * 2000)::int, NULL, 0, false,
                    CASE WHEN g %% 50 = 0 THEN 'error' ELSE 'ok' END,
                    CASE WHEN g %% 50 = 0 THEN 'unavailable' ELSE '' END,
                    CASE WHEN g %% 50 = 0 THEN 502 ELSE 200 END
                FROM (SELECT g, (100 + random() * 2000)::int AS it, (20 + random() * 600)::int AS ot
                      FROM generate_series(1, %s) AS g) AS s
            """,
                [tenant.id, prefix, days, events],
            )
        self.stdout.write(f"inserted {events:,} events in {time.monotonic() - started:.1f} s")
        vacuum_analyze()
        if not no_rollup:
            started = time.monotonic()
            rows = rollup_pending(redo_hours=(days + 1) * 24)
            self.stdout.write(f"rolled up into {rows:,} daily rows in {time.monotonic() - started:.1f} s")
        for rng in ("24h", "30d", "90d", "all"):
            first = self._time(tenant, rng)  # folds the rollups and sums the events past the watermark
            best = min(self._time(tenant, rng) for _ in range(5))
            self.stdout.write(
                f"usage_summary(range={rng}): first read {first * 1000:.1f} ms, then {best * 1000:.1f} ms (best of 5)"
            )

    @staticmethod
    def _time(tenant, rng) -> float:
        started = time.perf_counter()
        usage_summary(tenant=tenant, range_name=rng)
        return time.perf_counter() - started
