"""DNS rebinding: a tenant's endpoint name answers a public address to the SSRF check and a private one to the
connection. The upstream transports check the addresses they dial, so the call is refused and nothing reaches the
private address; with ALLOW_PRIVATE_ENDPOINTS on (the dev default) the same endpoint is called."""

from __future__ import annotations

import socket

import openai
import pytest

from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

REBIND = "rebind.example"
PUBLIC = "93.184.216.34"


@pytest.fixture
def rebinding_dns(monkeypatch):
    """The SSRF check's lookup of REBIND answers PUBLIC; every later lookup (the connection's) answers 127.0.0.1,
    where the fake provider listens."""
    from llm.config import ssrf

    real_getaddrinfo, real_resolve = socket.getaddrinfo, ssrf._resolve

    def connection_lookup(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes the IDNA-encoded name
        return real_getaddrinfo("127.0.0.1" if name == REBIND else host, *args, **kwargs)

    monkeypatch.setattr(
        ssrf, "_resolve", lambda host, port: [PUBLIC] if host == REBIND else real_resolve(host, port)
    )
    monkeypatch.setattr(socket, "getaddrinfo", connection_lookup)
    ssrf.clear_dns_cache()
    yield
    ssrf.clear_dns_cache()


@pytest.fixture
def rebinding_endpoint(settings, rebinding_dns, fake, tenant, manage_client):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    saved = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "llama3:8b",
            "custom_endpoint": {"kind": "openai_compatible", "base_url": f"http://{REBIND}:{fake.port}/v1"},
        },
        format="json",
    )
    assert saved.status_code in (200, 201), saved.content  # the check saw the public answer
    reconfigured()
    return tenant


@pytest.mark.parametrize("http2", [False, True], ids=["aiohttp", "httpx-http2"])
def test_a_name_that_rebinds_to_a_private_address_is_refused_when_connecting(
    settings, rebinding_endpoint, gateway_url, make_key, fake, http2
):
    settings.UPSTREAM_HTTP2 = http2
    client = openai.OpenAI(
        base_url=gateway_url + "/v1",
        api_key=make_key(rebinding_endpoint, scopes=["gateway"]),
        max_retries=0,
        timeout=20,
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 502
    assert f"{REBIND} resolved to a non-public address when connecting" in caught.value.message
    assert fake.requests == [], "nothing reached the private address"
    assert [(e.status, e.mode) for e in drain_events()] == [("error", "custom")]


@pytest.mark.parametrize("http2", [False, True], ids=["aiohttp", "httpx-http2"])
def test_with_private_endpoints_allowed_the_same_endpoint_is_called(
    settings, rebinding_endpoint, gateway_url, make_key, fake, http2
):
    settings.UPSTREAM_HTTP2 = http2
    settings.ALLOW_PRIVATE_ENDPOINTS = True
    client = openai.OpenAI(
        base_url=gateway_url + "/v1",
        api_key=make_key(rebinding_endpoint, scopes=["gateway"]),
        max_retries=0,
        timeout=20,
    )
    reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content.startswith("Hello from fake")
    assert len(fake.requests) == 1
