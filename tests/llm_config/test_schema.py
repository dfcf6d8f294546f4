"""Every LLM configuration endpoint is in the OpenAPI schema."""

import pytest

pytestmark = pytest.mark.django_db


def test_schema_documents_every_endpoint(manage_client):
    response = manage_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path, methods in {
        "/api/llm/models": {"get"},
        "/api/llm/preferences": {"get", "post"},
        "/api/llm/credentials": {"get", "post"},
        "/api/llm/credentials/{credential_id}": {"get", "patch", "delete"},
        "/api/llm/routes": {"get", "post"},
        "/api/llm/routes/{route_id}": {"get", "put", "patch", "delete"},
        "/api/llm/routes/export": {"get"},
        "/api/llm/routes/import": {"post"},
        "/api/llm/test-connection": {"post"},
        "/api/llm/ollama/models": {"get", "post"},
    }.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
