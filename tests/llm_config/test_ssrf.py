"""SSRF guard: only public http(s) endpoints in production, checked at save time and again at call time."""

from __future__ import annotations

import pytest

from llm.config import ssrf

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:11434/v1",
        "http://127.1.2.3/",
        "http://localhost:8000/",
        "http://0.0.0.0/",
        "http://10.0.0.1/v1",
        "http://10.255.1.2/",
        "http://172.16.0.1/",
        "http://172.31.255.254/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1/",
        "http://100.64.0.1/",
        "http://[::1]:8080/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a00:1]/",
        "http://metadata.google.internal/",
        "http://[::]/",
    ],
)
def test_private_addresses_are_refused_in_production(production_ssrf, url):
    with pytest.raises(ssrf.BlockedAddress):
        ssrf.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://x/",
        "//example.com",
        "http://user:pw@example.com/",
    ],
)
def test_only_http_and_https_are_allowed(url):
    with pytest.raises(ssrf.BlockedAddress):
        ssrf.check_url(url, allow_private=True)


def test_hostname_resolving_to_a_private_address_is_refused(production_ssrf, dns):
    dns["llm.internal.example.com"] = ["10.1.2.3"]
    with pytest.raises(ssrf.BlockedAddress, match="private"):
        ssrf.check_url("https://llm.internal.example.com/v1")


def test_any_private_address_among_several_is_refused(production_ssrf, dns):
    dns["split.example.com"] = ["93.184.216.34", "192.168.0.7"]
    with pytest.raises(ssrf.BlockedAddress):
        ssrf.check_url("https://split.example.com/v1")


def test_public_hosts_pass(production_ssrf, dns):
    dns["api.example.com"] = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    ssrf.check_url("https://api.example.com/v1")
    ssrf.check_url("https://93.184.216.34/v1")


def test_unresolvable_host_is_refused(production_ssrf, dns):
    with pytest.raises(ssrf.BlockedAddress, match="does not resolve"):
        ssrf.check_url("https://nowhere.example.com/v1")


def test_private_endpoints_allowed_when_configured(settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = True
    ssrf.check_url("http://127.0.0.1:11434/v1")
    ssrf.check_url("http://[::1]/")


def test_saving_a_private_endpoint_is_a_field_error(manage_client, production_ssrf):
    response = manage_client.post(
        "/api/llm/credentials",
        {"kind": "openai_compatible", "name": "vllm", "base_url": "http://10.0.0.8:8000/v1"},
        format="json",
    )
    assert response.status_code == 400
    assert "private" in response.json()["base_url"][0]


def test_saving_through_preferences_is_checked_too(manage_client, production_ssrf):
    response = manage_client.post(
        "/api/llm/preferences",
        {
            "mode": "custom",
            "model": "llama3",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": "http://[::ffff:127.0.0.1]:11434/v1",
            },
        },
        format="json",
    )
    assert response.status_code == 400
    assert "base_url" in response.json()["custom_endpoint"]
