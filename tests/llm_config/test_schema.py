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
        "/api/llm/endpoint-models": {"post"},
    }.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))


def _write_operations():
    """(method, URL pattern) of every write the LLM configuration API (llm/api_urls.py) answers."""
    from llm import api_urls

    for pattern in api_urls.urlpatterns:
        view = pattern.callback.view_class
        for method in ("post", "put", "patch"):
            if hasattr(view, method):
                yield method, str(pattern.pattern)


def test_each_write_is_validated_by_the_serializer_its_schema_names(
    manage_client, monkeypatch, platform_allowed
):
    """The request body the schema publishes for each write is the component of the serializer the view really
    validates with (the first whose is_valid runs), with exactly its writable fields."""
    import re

    from rest_framework import serializers

    schema = manage_client.get("/api/schema/?format=json").json()
    credential = manage_client.post(
        "/api/llm/credentials", {"kind": "openai", "api_key": "sk-schema-test-0000"}, format="json"
    ).json()["id"]
    route = manage_client.post(
        "/api/llm/routes", {"name": "chat", "targets": ["openai:gpt-5"]}, format="json"
    ).json()["id"]
    ids = {"credential_id": credential, "route_id": route}
    used: list[serializers.Serializer] = []
    real = serializers.Serializer.is_valid

    def spy(self, *args, **kwargs):
        used.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(serializers.Serializer, "is_valid", spy)
    operations = list(_write_operations())
    assert len(operations) == 11, (
        operations
    )  # credentials ×3, preferences, routes ×3, import, test, Ollama, discovery
    for method, pattern in operations:
        path = "/api/" + re.sub(r"<\w+:(\w+)>", lambda m: str(ids[m[1]]), pattern)
        documented = "/api/" + re.sub(r"<\w+:(\w+)>", r"{\1}", pattern)
        body = schema["paths"][documented][method]["requestBody"]["content"]["application/json"]["schema"]
        component = body["$ref"].rsplit("/", 1)[1]
        used.clear()
        response = getattr(manage_client, method)(
            path, [], format="json"
        )  # no object: refused, nothing changes
        assert response.status_code == 400, (method, path, response.content)
        assert used, (method, path, "validated by no serializer")
        validated_by = type(used[0])
        assert (
            component.removeprefix("Patched").removesuffix("Request") + "Serializer" == validated_by.__name__
        ), (
            method,
            path,
        )
        writable = {field.field_name for field in validated_by()._writable_fields}
        assert set(schema["components"]["schemas"][component]["properties"]) == writable, (method, path)
