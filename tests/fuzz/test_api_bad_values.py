"""Values the schema-driven fuzz of /api found answered with 500, each pinned down: a clear 400 field error or
the 404 of a missing object, and nothing changed."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/api/llm/routes/%C2%B2", "/api/llm/routes/a%00b", "/api/llm/routes/" + "9" * 5000]
)
def test_a_route_reference_that_is_no_id_is_a_missing_route(manage_client, path):
    """ "²" passes str.isdigit() yet int() refuses it; a NUL cannot be sent to PostgreSQL; 5,000 digits exceed
    int()'s limit. None of them names a route."""
    for method in ("get", "delete"):
        response = getattr(manage_client, method)(path)
        assert response.status_code == 404, (method, response.content)
        assert response.json() == {"detail": "No such route."}


@pytest.mark.parametrize("agent", ["a\x00b", "²", "9" * 5000])
def test_an_agent_query_that_is_no_slug_or_id_is_a_missing_agent(manage_client, agent):
    for path in ("/api/llm/preferences", "/api/llm/usage"):
        response = manage_client.get(path, {"agent": agent})
        assert response.status_code == 404, (path, response.content)
    assert manage_client.delete("/api/llm/preferences?agent=a%00b").status_code == 404


def test_an_audit_filter_with_a_null_character_is_a_field_error(manage_client):
    response = manage_client.get("/api/audit", {"action": "apikey\x00"})
    assert response.status_code == 400
    assert response.json() == {"action": ["Null characters are not allowed."]}


@pytest.mark.parametrize("credential", ["²", "9" * 5000, "a\x00b"])
def test_a_route_target_credential_that_is_no_id_or_name_is_a_field_error(manage_client, credential):
    from llm.models import Route

    response = manage_client.post(
        "/api/llm/routes",
        {"name": "chat", "targets": [{"model": "anthropic:claude-sonnet-4.5", "credential": credential}]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "Target 1: no credential" in " ".join(response.json()["targets"])
    assert not Route.objects.unscoped().exists()


@pytest.mark.parametrize("yaml", [5.99e16, 12, ["routes"], {"routes": []}, True])
def test_route_import_yaml_that_is_not_text_is_a_field_error(manage_client, yaml):
    from llm.models import Route

    response = manage_client.post("/api/llm/routes/import", {"yaml": yaml}, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {"yaml": ["Send the routes as YAML text."]}
    assert not Route.objects.unscoped().exists()


@pytest.mark.parametrize("text", ["\x18", "routes: []\x00", "\ud800"])
def test_route_import_text_with_characters_yaml_refuses_is_a_field_error(manage_client, text):
    from llm.models import Route

    for body in (text, {"yaml": text}):
        response = manage_client.post(
            "/api/llm/routes/import", json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 400, response.content
        assert response.json()["yaml"][0].startswith("Not valid YAML: it holds characters")
    assert not Route.objects.unscoped().exists()
