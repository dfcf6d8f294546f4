"""Credentials: encrypted at rest, masked on every read, never in logs, audit or admin pages."""

from __future__ import annotations

import logging

import pytest
from django.db import connection

from llm.config.credentials import mask, secrets_of
from llm.models import Credential
from tests.llm_config.conftest import SECRET

pytestmark = pytest.mark.django_db


def _create(client, **body):
    body = {"kind": "anthropic", "name": "main", "api_key": SECRET, **body}
    return client.post("/api/llm/credentials", body, format="json")


def test_mask_shows_first_three_and_last_four():
    assert mask("sk-abcdefgh123456") == "sk-…3456"
    assert mask("short12") == "…12"
    assert mask("") == ""


def test_create_returns_the_mask_only(manage_client):
    response = _create(manage_client)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["api_key_masked"] == "sk-…3456"
    assert "api_key" not in body
    assert SECRET not in response.content.decode()


def test_secret_is_absent_from_every_response_log_audit_and_admin_page(
    manage_client, admin_client, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    bodies = []
    created = _create(manage_client)
    cid = created.json()["id"]
    bodies.append(created)
    bodies.append(manage_client.get("/api/llm/credentials"))
    bodies.append(manage_client.get(f"/api/llm/credentials/{cid}"))
    bodies.append(
        manage_client.patch(f"/api/llm/credentials/{cid}", {"api_key": SECRET + "X"}, format="json")
    )
    bodies.append(manage_client.patch(f"/api/llm/credentials/{cid}", {"name": "renamed"}, format="json"))
    bodies.append(_create(manage_client, name="bad", api_key=SECRET + " with space"))  # error path
    bodies.append(manage_client.get("/api/audit"))
    bodies.append(admin_client.get("/admin/llm/credential/"))
    bodies.append(admin_client.get(f"/admin/llm/credential/{cid}/change/"))
    for response in bodies:
        assert response.status_code in (200, 201, 400), response.status_code
        assert SECRET not in response.content.decode()
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text + out + err


def test_database_column_holds_ciphertext_only(manage_client):
    cid = _create(manage_client).json()["id"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(c)::text FROM llm_credential c WHERE id = %s", [cid])
        row = cursor.fetchone()[0]
        cursor.execute("SELECT string_agg(row_to_json(k)::text, '') FROM llm_tenantdatakey k")
        keys = cursor.fetchone()[0]
    assert SECRET not in row
    assert SECRET[8:20] not in row
    assert '"secrets_ciphertext": "gAAAAA' in row.replace('":"', '": "')  # a Fernet token
    assert SECRET not in keys
    assert secrets_of(Credential.objects.unscoped().get(pk=cid))["api_key"] == SECRET


def test_patching_the_key_rotates_it_and_keeps_other_secrets(manage_client):
    cid = manage_client.post(
        "/api/llm/credentials",
        {
            "kind": "bedrock",
            "name": "aws",
            "region": "eu-central-1",
            "access_key_id": "AKIAEXAMPLE",
            "secret_access_key": "aws-secret-value-0000-1111",
        },
        format="json",
    ).json()["id"]
    body = manage_client.patch(f"/api/llm/credentials/{cid}", {"region": "eu-west-1"}, format="json").json()
    assert body["region"] == "eu-west-1"
    assert body["rotated_at"] is None
    assert body["eu_hosted"] is True
    assert "secret_access_key" not in body
    cred = Credential.objects.unscoped().get(pk=cid)
    assert secrets_of(cred)["secret_access_key"] == "aws-secret-value-0000-1111"
    body = manage_client.patch(
        f"/api/llm/credentials/{cid}", {"secret_access_key": "aws-new-secret-2222-3333"}, format="json"
    ).json()
    assert body["rotated_at"] is not None
    assert body["api_key_masked"] == "aws…3333"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": "openai", "api_key": ""}, "api_key"),
        ({"kind": "openai_compatible", "base_url": ""}, "base_url"),
        ({"kind": "openai_compatible", "base_url": "ftp://example.com"}, "base_url"),
        (
            {
                "kind": "azure_openai",
                "base_url": "https://x.openai.azure.com",
                "api_key": "k" * 20,
                "api_version": "2024-10-21",
            },
            "deployment",
        ),
        (
            {
                "kind": "azure_openai",
                "base_url": "https://x.openai.azure.com",
                "api_key": "k" * 20,
                "deployment": "d",
                "api_version": "yesterday",
            },
            "api_version",
        ),
        (
            {"kind": "bedrock", "region": "moon-1", "access_key_id": "A", "secret_access_key": "s" * 20},
            "region",
        ),
        ({"kind": "bedrock", "region": "eu-central-1", "access_key_id": "A"}, "secret_access_key"),
        (
            {"kind": "openai_compatible", "base_url": "https://api.example.com/v1", "input_usd_per_mtok": -1},
            "input_usd_per_mtok",
        ),
        (
            {
                "kind": "openai_compatible",
                "base_url": "https://api.example.com/v1",
                "headers": {"bad name": "x"},
            },
            "headers",
        ),
    ],
)
def test_invalid_credentials_get_field_errors_and_change_nothing(manage_client, body, field):
    response = manage_client.post("/api/llm/credentials", {"name": "c", **body}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Credential.objects.unscoped().exists()


def test_duplicate_name_is_a_field_error(manage_client):
    _create(manage_client)
    response = _create(manage_client)
    assert response.status_code == 400
    assert "name" in response.json()


def test_delete(manage_client):
    cid = _create(manage_client).json()["id"]
    assert manage_client.delete(f"/api/llm/credentials/{cid}").status_code == 204
    assert manage_client.get(f"/api/llm/credentials/{cid}").status_code == 404


def test_changes_are_audited_without_secrets(manage_client):
    cid = _create(manage_client).json()["id"]
    manage_client.patch(f"/api/llm/credentials/{cid}", {"api_key": SECRET + "Y"}, format="json")
    events = manage_client.get("/api/audit?action=llm.credential").json()
    assert [e["action"] for e in events] == ["llm.credential.update", "llm.credential.create"]
    assert events[0]["changes"]["api_key_masked"] == "sk-…456Y"
