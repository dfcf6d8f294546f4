"""The seed's `llm_config:` YAML documents through the route import and export API: one provider, per-task
routing, an on-premise endpoint with `authentication: bearer-token`; refusals name the place and change nothing."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from llm.models import Route

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("platform_allowed")]
URL = "/api/llm/routes"
TOKEN = "corp-" + "token-0123456789"


def _import(client, text: str, **query):
    suffix = "?replace=true" if query.get("replace") else ""
    return client.post(f"{URL}/import{suffix}", textwrap.dedent(text), content_type="application/yaml")


def _targets(tenant, name: str) -> list[tuple[str, dict]]:
    route = Route.objects.for_tenant(tenant).get(name=name)
    return [(t["model"], t.get("params") or {}) for t in route.targets]


def _endpoint(client, name="corp-llm", token: str | None = TOKEN):
    body = {"kind": "openai_compatible", "name": name, "base_url": "http://127.0.0.1:8999/v1"}
    if token:
        body["api_key"] = token
    created = client.post("/api/llm/credentials", body, format="json")
    assert created.status_code == 201, created.json()
    return created.json()


def test_single_provider_document_becomes_the_default_route(manage_client, tenant):
    answer = _import(
        manage_client,
        """
        llm_config:
          provider: anthropic
          model: claude-sonnet-4.5
          temperature: 0.2
          max_tokens: 2048
          fallbacks:
            - provider: openai
              model: gpt-5-mini
        """,
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["created"] == ["default"]
    assert _targets(tenant, "default") == [
        ("anthropic:claude-sonnet-4.5", {"temperature": 0.2, "max_tokens": 2048}),
        ("openai:gpt-5-mini", {}),
    ]


def test_per_task_routing_makes_one_route_per_task(manage_client, tenant):
    answer = _import(
        manage_client,
        """
        llm_config:
          default:
            provider: openai
            model: gpt-5-mini
          tasks:
            rule_extraction:
              provider: anthropic
              model: claude-sonnet-4.5
              temperature: 0
            Summaries:
              model: google:gemini-2.5-flash
              fallback: openai:gpt-5-mini
        """,
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["created"] == ["default", "rule_extraction", "summaries"]
    assert _targets(tenant, "rule_extraction") == [("anthropic:claude-sonnet-4.5", {"temperature": 0.0})]
    assert [m for m, _ in _targets(tenant, "summaries")] == ["google:gemini-2.5-flash", "openai:gpt-5-mini"]


def test_on_premise_document_uses_the_saved_endpoint_and_its_token(manage_client, tenant):
    endpoint = _endpoint(manage_client)
    answer = _import(
        manage_client,
        """
        llm_config:
          name: onprem
          provider: custom
          endpoint: http://127.0.0.1:8999/v1/
          authentication: bearer-token
          model: llama-3.1-70b-instruct
        """,
    )
    assert answer.status_code == 200, answer.json()
    route = Route.objects.for_tenant(tenant).get(name="onprem")
    assert route.targets[0]["model"] == "llama-3.1-70b-instruct"
    assert route.targets[0]["credential"] == endpoint["id"]


def test_on_premise_refusals_say_what_to_do_and_change_nothing(manage_client, tenant):
    doc = """
        llm_config:
          provider: vllm
          endpoint: http://127.0.0.1:8999/v1
          authentication: bearer-token
          model: llama
        """
    missing = _import(manage_client, doc)
    assert missing.status_code == 400
    assert "no saved endpoint at http://127.0.0.1:8999/v1" in missing.json()["yaml"][0]
    _endpoint(manage_client, token=None)
    no_token = _import(manage_client, doc)
    assert no_token.status_code == 400
    assert "has no token saved" in no_token.json()["yaml"][0]
    inline = _import(manage_client, doc.replace("model: llama", f"model: llama\n          token: {TOKEN}"))
    assert inline.status_code == 400
    message = " ".join(inline.json()["yaml"])
    assert "secrets are not read from files" in message
    assert TOKEN not in message
    assert not Route.objects.for_tenant(tenant).exists()


def test_bad_documents_are_field_errors_that_name_the_place(manage_client, tenant):
    cases = {
        "llm_config: 5": "expected a mapping",
        "llm_config: {}": "name a provider and model",
        "llm_config: {provider: openai}": "llm_config: model is required",
        "llm_config: {model: gpt-5-mini, colour: red}": "unknown field(s) colour",
        "llm_config: {tasks: [a, b]}": "llm_config.tasks: expected a mapping",
        "llm_config: {tasks: {x: {provider: openai, model: gpt-5-mini, speed: 3}}}": "llm_config.tasks.x",
    }
    for text, expected in cases.items():
        answer = _import(manage_client, text)
        assert answer.status_code == 400, text
        assert expected in " ".join(answer.json()["yaml"]), (text, answer.json())
    # A model the gateway would refuse is refused as in any route, naming the route.
    unknown = _import(manage_client, "llm_config: {provider: nope, model: nothing}")
    assert unknown.status_code == 400
    assert unknown.json()["routes"][0].startswith("default: ")
    assert not Route.objects.for_tenant(tenant).exists()


def test_llm_config_export_imports_into_another_workspace_unchanged(
    manage_client, other_client, other_tenant
):
    _endpoint(manage_client)
    _endpoint(other_client)
    source = """
        llm_config:
          default:
            provider: anthropic
            model: claude-sonnet-4.5
            max_tokens: 1000
            fallbacks:
              - {provider: openai, model: gpt-5-mini}
          tasks:
            onprem:
              provider: custom
              credential: corp-llm
              authentication: bearer-token
              model: llama-3.1-70b-instruct
            ab:
              model: openai:gpt-5-mini
              weight: 80
              fallbacks: [{model: google:gemini-2.5-flash, weight: 20}]
        """
    assert _import(manage_client, source).status_code == 200
    export = manage_client.get(f"{URL}/export?dialect=llm_config")
    assert export.status_code == 200
    assert export["Content-Type"].startswith("application/yaml")
    text = export.content.decode()
    doc = yaml.safe_load(text)
    assert doc["llm_config"]["default"]["provider"] == "anthropic"
    assert doc["llm_config"]["tasks"]["onprem"]["authentication"] == "bearer-token"
    assert doc["llm_config"]["tasks"]["onprem"]["endpoint"] == "http://127.0.0.1:8999/v1"
    assert TOKEN not in text
    imported = _import(other_client, text)
    assert imported.status_code == 200, imported.json()
    assert sorted(imported.json()["created"]) == ["ab", "default", "onprem"]
    assert other_client.get(f"{URL}/export?dialect=llm_config").content.decode() == text
    assert Route.objects.for_tenant(other_tenant).get(name="ab").targets[0]["weight"] == 80
    # The project's own format is still the default export.
    assert "version" in yaml.safe_load(manage_client.get(f"{URL}/export").content)
