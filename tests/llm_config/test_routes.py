"""Named routes through the API: CRUD, validation, A/B weights, cache opt-in, YAML export/import round trip."""

from __future__ import annotations

import pytest
import yaml

from llm.models import Route

# Routes below name platform-mode targets (the workspace has no preferences): the workspace may call them.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("platform_allowed")]
URL = "/api/llm/routes"


def _chat_route(**extra):
    return {
        "name": "chat",
        "targets": [
            {"model": "anthropic:claude-sonnet-4.5", "params": {"temperature": 0.3}},
            {"model": "openai:gpt-5-mini"},
        ],
        **extra,
    }


def test_create_list_get_update_delete(manage_client):
    created = manage_client.post(URL, _chat_route(description="The chat bot"), format="json")
    assert created.status_code == 201, created.json()
    route = created.json()
    assert route["model"] == "route:chat"
    assert route["weighted"] is False
    assert route["cache_ttl_seconds"] is None
    assert [t["model"] for t in route["targets"]] == ["anthropic:claude-sonnet-4.5", "openai:gpt-5-mini"]
    assert [r["name"] for r in manage_client.get(URL).json()] == ["chat"]
    assert manage_client.get(f"{URL}/{route['id']}").json()["description"] == "The chat bot"
    patched = manage_client.patch(f"{URL}/{route['id']}", {"cache_ttl_seconds": 300}, format="json").json()
    assert patched["cache_ttl_seconds"] == 300
    assert patched["description"] == "The chat bot"
    put = manage_client.put(
        f"{URL}/{route['id']}", {"name": "chat", "targets": ["openai:gpt-5"]}, format="json"
    )
    assert put.status_code == 200
    assert put.json()["description"] == ""
    assert put.json()["cache_ttl_seconds"] is None
    assert manage_client.delete(f"{URL}/{route['id']}").status_code == 204
    assert manage_client.get(f"{URL}/{route['id']}").status_code == 404


def test_weighted_targets_make_an_ab_split(manage_client):
    route = manage_client.post(
        URL,
        {
            "name": "summaries",
            "targets": [
                {"model": "openai:gpt-5-mini", "weight": 70},
                {"model": "google:gemini-2.5-flash", "weight": 30},
                {"model": "anthropic:claude-haiku-4.5"},
            ],
        },
        format="json",
    ).json()
    assert route["weighted"] is True


def test_targets_may_name_a_credential(manage_client):
    cred = manage_client.post(
        "/api/llm/credentials",
        {"kind": "openai_compatible", "name": "vllm", "base_url": "http://127.0.0.1:8000/v1"},
        format="json",
    ).json()
    response = manage_client.post(
        URL,
        {
            "name": "rule_extraction",
            "targets": [
                {"model": "qwen2.5-coder", "credential": "vllm"},
                {"model": "anthropic:claude-haiku-4.5"},
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["targets"][0]["credential"] == cred["id"]
    assert response.json()["targets"][0]["credential_name"] == "vllm"


def test_what_get_answers_may_be_sent_back(manage_client):
    """A client reads a route, changes one thing and sends the whole object back: the fields GET adds (id, model,
    weighted, the times, a target's credential_name, what cannot be reached) are accepted and ignored."""
    manage_client.post(
        "/api/llm/credentials",
        {"kind": "openai_compatible", "name": "vllm", "base_url": "http://127.0.0.1:8000/v1"},
        format="json",
    )
    route = manage_client.post(
        URL,
        {"name": "chat", "targets": [{"model": "qwen2.5-coder", "credential": "vllm"}, "openai:gpt-5-mini"]},
        format="json",
    ).json()
    read = manage_client.get(f"{URL}/{route['id']}").json()
    read["description"] = "edited"
    for method in (manage_client.put, manage_client.patch):
        sent = method(f"{URL}/{route['id']}", read, format="json")
        assert sent.status_code == 200, sent.json()
        assert sent.json()["description"] == "edited"
        assert [t["model"] for t in sent.json()["targets"]] == ["qwen2.5-coder", "openai:gpt-5-mini"]
    assert manage_client.patch(f"{URL}/{route['id']}", {"colour": "red"}, format="json").status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name", "targets": ["openai:gpt-5"]}, "name"),
        ({"name": "chat", "targets": []}, "targets"),
        ({"name": "chat", "targets": ["nope:nope"]}, "targets"),
        ({"name": "chat", "targets": ["not-a-model"]}, "targets"),  # a bare name: no custom endpoint knows it
        ({"name": "chat", "targets": ["openai:not-a-model"]}, "targets"),
        ({"name": "chat", "targets": [{"model": "openai:gpt-5", "weight": -1}]}, "targets"),
        (
            {"name": "chat", "targets": [{"model": "openai:gpt-5", "weight": 5}, "openai:gpt-5-mini"]},
            "targets",
        ),
        ({"name": "chat", "targets": [{"model": "openai:gpt-5", "params": {"temperature": 3}}]}, "targets"),
        ({"name": "chat", "targets": [{"model": "openai:gpt-5", "params": {"top_k": 3}}]}, "targets"),
        ({"name": "chat", "targets": [{"model": "openai:gpt-5", "credential": 999999}]}, "targets"),
        ({"name": "chat", "targets": ["openai:gpt-5"], "cache_ttl_seconds": -5}, "cache_ttl_seconds"),
        ({"name": "chat", "targets": ["openai:gpt-5"], "eu_only": True}, "targets"),
        ({"name": "chat", "targets": ["openai:gpt-5"], "colour": "red"}, "colour"),
    ],
)
def test_invalid_routes_are_field_errors_and_change_nothing(manage_client, body, field):
    response = manage_client.post(URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert not Route.objects.unscoped().exists()


def test_duplicate_name_is_a_field_error(manage_client):
    manage_client.post(URL, _chat_route(), format="json")
    response = manage_client.post(URL, _chat_route(), format="json")
    assert response.status_code == 400
    assert "name" in response.json()


def test_another_tenants_credential_cannot_be_named(manage_client, other_client):
    theirs = other_client.post(
        "/api/llm/credentials", {"kind": "openai", "api_key": "sk-other-tenant-key-1"}, format="json"
    ).json()
    response = manage_client.post(
        URL,
        {"name": "chat", "targets": [{"model": "openai:gpt-5", "credential": theirs["id"]}]},
        format="json",
    )
    assert response.status_code == 400
    assert "no credential" in response.json()["targets"][0]


def test_yaml_export_import_round_trip(manage_client, other_client):
    manage_client.post(
        "/api/llm/credentials",
        {"kind": "openai", "name": "team-openai", "api_key": "sk-team-openai-123456"},
        format="json",
    )
    other_client.post(
        "/api/llm/credentials",
        {"kind": "openai", "name": "team-openai", "api_key": "sk-team-openai-999999"},
        format="json",
    )
    manage_client.post(URL, _chat_route(cache_ttl_seconds=60), format="json")
    manage_client.post(
        URL,
        {
            "name": "summaries",
            "description": "Nightly",
            "targets": [
                {"model": "openai:gpt-5-mini", "credential": "team-openai", "weight": 80},
                {"model": "google:gemini-2.5-flash", "weight": 20},
            ],
        },
        format="json",
    )
    export = manage_client.get(f"{URL}/export")
    assert export.status_code == 200
    assert export["Content-Type"].startswith("application/yaml")
    text = export.content.decode()
    doc = yaml.safe_load(text)
    assert [r["name"] for r in doc["routes"]] == ["chat", "summaries"]
    assert doc["routes"][1]["targets"][0]["credential"] == "team-openai"
    assert "sk-team" not in text

    imported = other_client.post(f"{URL}/import", text, content_type="application/yaml")
    assert imported.status_code == 200, imported.json()
    assert imported.json() == {"created": ["chat", "summaries"], "updated": [], "deleted": []}
    assert other_client.get(f"{URL}/export").content.decode() == text
    again = other_client.post(f"{URL}/import", {"yaml": text}, format="json").json()
    assert again == {"created": [], "updated": [], "deleted": []}


def test_import_is_all_or_nothing(manage_client):
    manage_client.post(URL, _chat_route(), format="json")
    text = yaml.safe_dump(
        {
            "version": 1,
            "routes": [
                {"name": "chat", "targets": ["openai:gpt-5"]},
                {"name": "broken", "targets": ["nope:nope"]},
            ],
        }
    )
    response = manage_client.post(f"{URL}/import", text, content_type="application/yaml")
    assert response.status_code == 400
    assert "broken" in response.json()["routes"][0]
    assert manage_client.get(URL).json()[0]["targets"][0]["model"] == "anthropic:claude-sonnet-4.5"
    assert (
        manage_client.post(f"{URL}/import", "routes: [unclosed", content_type="application/yaml").status_code
        == 400
    )


def test_import_with_replace_deletes_routes_not_listed(manage_client):
    manage_client.post(URL, _chat_route(), format="json")
    text = yaml.safe_dump({"routes": [{"name": "summaries", "targets": ["openai:gpt-5-mini"]}]})
    result = manage_client.post(f"{URL}/import?replace=true", text, content_type="application/yaml").json()
    assert result == {"created": ["summaries"], "updated": [], "deleted": ["chat"]}


def test_route_changes_are_audited(manage_client):
    rid = manage_client.post(URL, _chat_route(), format="json").json()["id"]
    manage_client.delete(f"{URL}/{rid}")
    actions = [e["action"] for e in manage_client.get("/api/audit?action=llm.route").json()]
    assert actions == ["llm.route.delete", "llm.route.create"]
