"""A custom endpoint's prompt-cache prices through the API: saved with the endpoint, read back, kept when left out,
cleared back to the input price, refused with a field error when not a price, and audited in words."""

from __future__ import annotations

import pytest

from llm.models import Credential, Preferences
from tenants.models import AuditEvent
from tenants.vocabulary import audit_changes

pytestmark = pytest.mark.django_db
URL = "/api/llm/preferences"
ENDPOINT = {
    "kind": "azure_openai",
    "base_url": "https://acme.openai.azure.com",
    "api_key": "azure-key-1234567890",
    "deployment": "gpt-4o-prod",
    "api_version": "2024-10-21",
    "input_usd_per_mtok": 2.5,
    "output_usd_per_mtok": 10,
}


def _save(client, **endpoint):
    return client.post(
        URL, {"mode": "custom", "model": "gpt-4o", "custom_endpoint": {**ENDPOINT, **endpoint}}, format="json"
    )


def _endpoint(client):
    return client.get(URL).json()["custom_endpoint"]


def _snapshot():
    return (
        list(Preferences.objects.unscoped().values()),
        list(Credential.objects.unscoped().values()),
        AuditEvent.objects.unscoped().filter(action__startswith="llm.").count(),
    )


def test_cache_prices_are_saved_and_read_back(manage_client):
    response = _save(manage_client, cache_read_usd_per_mtok=1.25, cache_write_usd_per_mtok="3.125")
    assert response.status_code == 200, response.json()
    ce = _endpoint(manage_client)
    assert (ce["input_usd_per_mtok"], ce["output_usd_per_mtok"]) == (2.5, 10.0)
    assert (ce["cache_read_usd_per_mtok"], ce["cache_write_usd_per_mtok"]) == (1.25, 3.125)
    assert response.json()["custom_endpoint"]["cache_read_usd_per_mtok"] == 1.25


def test_without_cache_prices_they_are_empty_meaning_the_input_price(manage_client):
    assert _save(manage_client).status_code == 200
    ce = _endpoint(manage_client)
    assert (ce["cache_read_usd_per_mtok"], ce["cache_write_usd_per_mtok"]) == (None, None)
    endpoint = Credential.objects.unscoped().get()
    assert (endpoint.cache_read_usd_per_mtok, endpoint.cache_write_usd_per_mtok) == (None, None)


def test_left_out_keeps_them_and_empty_or_null_clears_them(manage_client):
    _save(manage_client, cache_read_usd_per_mtok=0.25, cache_write_usd_per_mtok=3.75)
    kept = manage_client.post(URL, {"custom_endpoint": {"kind": "azure_openai"}}, format="json")
    assert kept.status_code == 200, kept.json()
    ce = _endpoint(manage_client)
    assert (ce["cache_read_usd_per_mtok"], ce["cache_write_usd_per_mtok"]) == (0.25, 3.75)

    cleared = manage_client.post(
        URL,
        {"custom_endpoint": {"cache_read_usd_per_mtok": "", "cache_write_usd_per_mtok": None}},
        format="json",
    )
    assert cleared.status_code == 200, cleared.json()
    ce = _endpoint(manage_client)
    assert (ce["cache_read_usd_per_mtok"], ce["cache_write_usd_per_mtok"]) == (None, None)
    assert Credential.objects.unscoped().count() == 1


def test_a_zero_cache_price_is_a_price_not_empty(manage_client):
    assert _save(manage_client, cache_read_usd_per_mtok=0, cache_write_usd_per_mtok="0").status_code == 200
    ce = _endpoint(manage_client)
    assert (ce["cache_read_usd_per_mtok"], ce["cache_write_usd_per_mtok"]) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("cache_read_usd_per_mtok", -0.1, "between 0 and 10000"),
        ("cache_read_usd_per_mtok", "cheap", "Enter a number"),
        ("cache_write_usd_per_mtok", 10_001, "between 0 and 10000"),
        ("cache_write_usd_per_mtok", "NaN", "between 0 and 10000"),
        ("cache_write_usd_per_mtok", True, "Enter a number"),
    ],
)
def test_a_bad_cache_price_is_a_field_error_and_changes_nothing(manage_client, field, value, words):
    assert _save(manage_client, cache_read_usd_per_mtok=0.25).status_code == 200
    before = _snapshot()
    response = _save(manage_client, **{field: value, "input_usd_per_mtok": 3})
    assert response.status_code == 400, response.json()
    errors = response.json()["custom_endpoint"]
    assert list(errors) == [field], errors
    assert words in " ".join(errors[field])
    assert _snapshot() == before


def test_the_credentials_api_takes_them_too(manage_client):
    created = manage_client.post(
        "/api/llm/credentials",
        {
            "name": "vllm",
            "kind": "openai_compatible",
            "base_url": "https://llm.example.com/v1",
            "input_usd_per_mtok": 1,
            "cache_read_usd_per_mtok": 0.1,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["cache_read_usd_per_mtok"] == 0.1
    assert created.json()["cache_write_usd_per_mtok"] is None
    refused = manage_client.patch(
        f"/api/llm/credentials/{created.json()['id']}", {"cache_write_usd_per_mtok": -1}, format="json"
    )
    assert refused.status_code == 400
    assert "cache_write_usd_per_mtok" in refused.json()


def test_price_changes_are_audited_in_words(manage_client):
    _save(manage_client)
    _save(manage_client, cache_read_usd_per_mtok=1.25, cache_write_usd_per_mtok=3.125)
    event = AuditEvent.objects.unscoped().filter(action="llm.credential.update").latest("id")
    words = {c.field: c.after for c in audit_changes(event.action, event.changes)}
    assert words == {
        "Cache-read price (USD / 1M tokens)": "1.25",
        "Cache-write price (USD / 1M tokens)": "3.125",
    }
    manage_client.post(URL, {"custom_endpoint": {"cache_write_usd_per_mtok": None}}, format="json")
    event = AuditEvent.objects.unscoped().filter(action="llm.credential.update").latest("id")
    words = {c.field: c.after for c in audit_changes(event.action, event.changes)}
    assert words == {"Cache-write price (USD / 1M tokens)": "the input price"}
