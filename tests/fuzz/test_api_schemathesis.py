"""Schema-driven fuzz of the tenant REST API: schemathesis reads `/api/schema/?format=json` (drf-spectacular) from
the Django app and sends every operation bodies, queries and path parameters made from it, valid and invalid,
through WSGI (no network) with a `manage` key. Whatever it sends, the API never answers with a 5xx, and what it
answers matches the schema it publishes, and the tenant's counters are at rest after each call.

Outbound connections the API makes for a tenant (connection tests, Ollama discovery, assistant calls, webhooks)
are held to loopback, so generated URLs never leave the machine.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fuzz.conftest import counters_at_rest

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def loopback_only(monkeypatch):
    """Name resolution answers only with loopback addresses: a generated host name or public address fails as an
    unknown host would, quickly, instead of reaching out."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        found = [
            info
            for info in real(host, *args, **kwargs)
            if info[4][0] in ("127.0.0.1", "::1") or str(info[4][0]).startswith("127.")
        ]
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (the fuzz stays on loopback)")
        return found

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class ManageKey:
    """A `manage` key of the tenant, replaced when the fuzzer revokes it (it may DELETE /api/keys/{id} too)."""

    def __init__(self, tenant: Any, make_key: Any):
        self.tenant = tenant
        self.make_key = make_key
        self.raw = make_key(tenant, scopes=["gateway", "manage"])

    def header(self) -> dict[str, str]:
        from tenants.keys import hash_key
        from tenants.models import ApiKey

        key = ApiKey.objects.unscoped().filter(key_hash=hash_key(self.raw)).first()
        if key is None or not key.is_active:
            self.raw = self.make_key(self.tenant, scopes=["gateway", "manage"])
        return {"Authorization": f"Bearer {self.raw}"}


@pytest.mark.slow
def test_no_api_operation_answers_with_a_server_error_or_off_its_schema(
    tenant, make_key, fake, loopback_only
):
    from django.core.wsgi import get_wsgi_application
    from rest_framework.test import APIClient

    key = ManageKey(tenant, make_key)

    def configure() -> None:
        """Custom mode on the fake upstream, so a connection test or a job that keeps the saved settings really
        calls (admitted, settled, metered); set again before each operation, as the fuzzer changes settings."""
        saved = APIClient(headers=key.header()).post(
            "/api/llm/preferences",
            {
                "mode": "custom",
                "model": "gpt-fake",
                "custom_endpoint": {
                    "kind": "openai_compatible",
                    "base_url": fake.url + "/v1",
                    "input_usd_per_mtok": 1,
                    "output_usd_per_mtok": 2,
                },
            },
            format="json",
        )
        assert saved.status_code in (200, 201), saved.content

    configure()
    tested = APIClient(headers=key.header()).post("/api/llm/test-connection", {}, format="json")
    assert tested.json()["ok"] is True, tested.content
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, headers=key.header())
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        configure()
        cases = st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def check(case: Any) -> None:
            response = case.call(headers=key.header())
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
            # connection tests, jobs and assistant calls are admitted and settled too
            counters_at_rest(tenant.id)

        # Every operation is tried; their failures are reported together.
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failure is reported together below
            failures.append(f"{operation.label}: {exc}")
    assert operations > 50, "the schema lost its operations"
    assert not failures, "\n\n".join(failures)
