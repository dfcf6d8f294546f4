"""One SSRF guard (llm/ssrf.py) for LLM endpoints and alert webhooks, with ALLOW_PRIVATE_ENDPOINTS=false: NAT64 of a
private address, 6to4, IPv4-compatible and multicast addresses are refused too. Webhooks are checked at save time and
at send time, on the addresses the connection dials (so DNS rebinding between the check and the connect fails)."""

from __future__ import annotations

import pytest

from billing import tasks
from billing.caps import after_usage, caps_update
from billing.models import AlertSent, Subscription
from llm.config import ssrf
from tenants.audit import SYSTEM

pytestmark = pytest.mark.django_db
URL = "/api/billing/alert-webhook"
PUBLIC = "93.184.216.34"
REFUSED = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 (of 127.0.0.1)
    "2002:5db8:d822::1",  # 6to4 of a public address: refused all the same
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::5db8:d822",  # IPv4-compatible of a public address
    "ff02::1",  # multicast
    "224.0.0.1",  # multicast
    "::ffff:10.0.0.1",  # IPv4-mapped private
    "169.254.169.254",  # cloud metadata
]


@pytest.fixture
def dns(monkeypatch, production_ssrf):
    """Host names answer what the test says: dns["hooks.example.com"] = [answer for call 1, call 2, …] (the last
    answer repeats)."""
    table: dict[str, list[list[str]]] = {}

    def resolve(host: str, port: int) -> list[str]:
        answers = table.get(host)
        if not answers:
            raise OSError("no such host")
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(ssrf, "_resolve", resolve)
    ssrf.clear_dns_cache()
    return table


@pytest.fixture
def deliver_once(monkeypatch, django_capture_on_commit_callbacks):
    """Cross the warn cap so an alert is sent; its webhook is tried once (no retries)."""
    monkeypatch.setattr(tasks.deliver_alert_webhook, "max_retries", 0)

    def run(tenant) -> AlertSent:
        caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=10, hard_tcu=10_000)
        with django_capture_on_commit_callbacks(execute=True):
            after_usage(tenant_id=tenant.id, tcu_before=0, tcu_after=50, tokens_before=0, tokens_after=0)
        return AlertSent.objects.unscoped().get(tenant=tenant)

    return run


def _saved_url(tenant) -> str:
    sub = Subscription.objects.unscoped().filter(tenant=tenant).first()
    return sub.alert_webhook_url if sub else ""


@pytest.mark.parametrize("address", REFUSED)
def test_saving_a_webhook_at_a_non_public_literal_address_is_refused(
    manage_client, tenant, production_ssrf, address
):
    host = f"[{address}]" if ":" in address else address
    response = manage_client.put(URL, {"url": f"https://{host}/hook"}, format="json")
    assert response.status_code == 400, response.content
    assert "only public endpoints" in response.json()["url"][0]
    assert _saved_url(tenant) == ""


@pytest.mark.parametrize("address", REFUSED)
def test_saving_a_webhook_whose_name_resolves_to_a_non_public_address_is_refused(
    manage_client, tenant, dns, address
):
    dns["hooks.example.com"] = [[PUBLIC, address]]
    response = manage_client.put(URL, {"url": "https://hooks.example.com/hook"}, format="json")
    assert response.status_code == 400, response.content
    assert address in response.json()["url"][0], response.content
    assert _saved_url(tenant) == ""


@pytest.mark.parametrize("address", REFUSED)
def test_sending_to_a_name_that_now_resolves_to_a_non_public_address_is_refused(
    manage_client, tenant, dns, deliver_once, address
):
    dns["hooks.example.com"] = [[PUBLIC], [address]]
    assert manage_client.put(URL, {"url": "https://hooks.example.com/hook"}, format="json").status_code == 200
    alert = deliver_once(tenant)
    assert alert.webhook_status == "failed"
    assert alert.webhook_last_error.startswith("refused:")
    assert address in alert.webhook_last_error


@pytest.mark.parametrize("address", REFUSED)
def test_dns_rebinding_between_the_check_and_the_connection_is_refused(
    manage_client, tenant, dns, deliver_once, address
):
    # public to the save and to the check before sending, then the address the connection would dial
    dns["hooks.example.com"] = [[PUBLIC], [PUBLIC], [address]]
    assert manage_client.put(URL, {"url": "https://hooks.example.com/hook"}, format="json").status_code == 200
    alert = deliver_once(tenant)
    assert alert.webhook_status == "failed"
    assert alert.webhook_last_error.startswith("refused:")
    assert address in alert.webhook_last_error
    assert "when connecting" in alert.webhook_last_error


def test_plain_http_is_refused_in_production(manage_client, tenant, dns):
    dns["hooks.example.com"] = [[PUBLIC]]
    response = manage_client.put(URL, {"url": "http://hooks.example.com/hook"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"url": ["Use an https URL."]}


@pytest.mark.parametrize("address", REFUSED)
def test_llm_endpoints_at_the_same_addresses_are_refused(manage_client, production_ssrf, address):
    host = f"[{address}]" if ":" in address else address
    response = manage_client.post(
        "/api/llm/credentials", {"kind": "openai_compatible", "base_url": f"https://{host}/v1"}, format="json"
    )
    assert response.status_code == 400
    assert "only public endpoints" in response.json()["base_url"][0]
