"""The published schema says what the API answers (found by the schema-driven fuzz: its answers were checked
against it)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_a_key_without_an_agent_is_described_as_having_none(schema, manage_client):
    assert manage_client.get("/api/keys").json()[0]["agent"] is None
    assert schema["components"]["schemas"]["ApiKey"]["properties"]["agent"]["nullable"] is True


def test_the_job_list_is_described_as_a_list(schema, manage_client):
    assert manage_client.get("/api/llm/jobs").json() == []
    listed = schema["paths"]["/api/llm/jobs"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    assert listed["type"] == "array"


def test_the_route_export_is_described_as_the_yaml_document_it_is(schema, manage_client):
    import yaml

    document = yaml.safe_load(manage_client.get("/api/llm/routes/export").content)
    assert document == {"version": 1, "routes": []}
    described = schema["paths"]["/api/llm/routes/export"]["get"]["responses"]["200"]["content"][
        "application/yaml"
    ]
    assert described["schema"]["type"] == "object"
    assert set(described["schema"]["properties"]) == {
        "version",
        "routes",
    }


def test_an_agent_without_a_budget_is_described_as_having_none(schema, manage_client, agent):
    assert manage_client.get(f"/api/billing/agents/{agent.slug}/budget").json()["monthly_tcu"] is None
    for name in ("AgentBudget", "AgentBudgetRead"):
        assert schema["components"]["schemas"][name]["properties"]["monthly_tcu"]["nullable"] is True
