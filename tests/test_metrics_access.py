"""`/metrics` names tenants and their spend: only the bearer METRICS_TOKEN or a direct connection from an allowed
address reads it; a request relayed by a proxy (whose own address may be loopback) needs the token."""

from __future__ import annotations

import pytest

from tests.billing.conftest import make_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def spend(tenant, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1", "::1"]
    make_usage(tenant, tokens=1000, tcu=4242)
    return tenant


def test_the_token_reads_the_tenant_figures(client, spend):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200
    assert 'tenant="acme"' in response.content.decode()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong"},
        {"HTTP_AUTHORIZATION": "Bearer sécret"},  # not ASCII: refused, not a 500
        {"HTTP_AUTHORIZATION": "scrape-secret"},
    ],
)
def test_other_addresses_without_the_token_get_nothing(client, spend, headers):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", **headers)
    assert response.status_code == 403
    assert b"acme" not in response.content


@pytest.mark.parametrize("header", ["HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"])
def test_a_request_relayed_by_a_local_proxy_needs_the_token(client, spend, header):
    relayed = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **{header: "203.0.113.9"})
    assert relayed.status_code == 403
    assert b"acme" not in relayed.content
    with_token = client.get(
        "/metrics",
        REMOTE_ADDR="127.0.0.1",
        HTTP_AUTHORIZATION="Bearer scrape-secret",
        **{header: "203.0.113.9"},
    )
    assert with_token.status_code == 200


def test_a_direct_scrape_from_an_allowed_address_works(client, spend):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert 'tenant="acme"' in response.content.decode()
