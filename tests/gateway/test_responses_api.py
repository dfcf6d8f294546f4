"""`/v1/responses` driven by the official `openai` SDK's `client.responses` against fake OpenAI-compatible and
Anthropic upstreams (bridged onto chat): plain, streamed, a function tool, chained with `previous_response_id`;
stored responses belong to their tenant, follow `store` and the retention, and are metered exactly once."""

from __future__ import annotations

from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from llm.models import StoredResponse
from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

# OpenAI's own API speaks Responses: the request goes to it as one (passed through); any other target gets the
# bridge onto chat (an OpenAI-compatible provider, Anthropic).
UPSTREAMS = {
    "openai_responses": ("openai:gpt-5-mini", "OPENAI", "/v1"),
    "openai_compat": ("mistral:mistral-small", "MISTRAL", "/v1"),
    "anthropic": ("anthropic:claude-haiku-4.5", "ANTHROPIC", ""),
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def enterprise(tenant):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


@pytest.fixture(params=list(UPSTREAMS))
def upstream(request, fake, monkeypatch):
    model, prefix, suffix = UPSTREAMS[request.param]
    monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
    monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    reconfigured()
    return request.param, model


def _client(gateway_url, key):
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture
def client(gateway_url, enterprise, make_key):
    return _client(gateway_url, make_key(enterprise, scopes=["gateway"]))


def test_plain_response_is_stored_read_back_and_deleted(client, upstream):
    kind, model = upstream
    response = client.responses.create(model=model, input="Hi", instructions="Be brief.")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == f"Hello from fake {kind}!"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 5)
    assert response.instructions == "Be brief."
    again = client.responses.retrieve(response.id)
    assert again.output_text == response.output_text
    items = client.responses.input_items.list(response.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Hi"
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    (event,) = drain_events()
    assert (event.model, event.status, event.input_tokens, event.output_tokens) == (model, "ok", 12, 5)


def test_streamed_response_sends_the_responses_events(client, upstream):
    kind, model = upstream
    events = list(client.responses.create(model=model, input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds
    assert "response.output_text.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == f"Hello from fake {kind}!"
    final = events[-1].response
    assert final.output_text == text
    assert final.usage.output_tokens == 5
    assert client.responses.retrieve(final.id).output_text == text
    with client.responses.stream(model=model, input="Hi") as stream:
        assert stream.get_final_response().output_text == text
    assert len(drain_events()) == 2


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_function_tool_round_trip_with_previous_response_id(client, upstream, fake, streamed):
    _, model = upstream
    ask = {"model": model, "input": "Weather in Paris?", "tools": [WEATHER], "tool_choice": "required"}
    if streamed:
        with client.responses.stream(**ask) as stream:
            first = stream.get_final_response()
    else:
        first = client.responses.create(**ask)
    (call,) = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather"
    assert call.arguments.replace(" ", "") == '{"city":"Paris"}'
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 °C, sunny"}],
    )
    assert second.output_text.startswith("Hello from fake")
    assert second.previous_response_id == first.id
    sent = fake.requests[-1][2]
    text = str(sent)
    assert "Weather in Paris?" in text
    assert "18 °C, sunny" in text
    assert call.call_id in text
    assert len(drain_events()) == 2


def test_chained_responses_carry_the_conversation(client, fake, monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-test-platform")
    monkeypatch.setenv("MISTRAL_BASE_URL", fake.url + "/v1")
    reconfigured()
    model = "mistral:mistral-small"
    first = client.responses.create(model=model, input="My name is Ada.", instructions="Be kind.")
    second = client.responses.create(model=model, previous_response_id=first.id, input="What is my name?")
    third = client.responses.create(
        model=model, previous_response_id=second.id, input=[{"role": "user", "content": "And?"}]
    )
    assert third.output_text.startswith("Hello from fake")
    messages = fake.requests[-1][2]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == "My name is Ada."  # the first call's instructions are not carried over
    assert messages[-1]["content"] == "And?"
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.create(model=model, previous_response_id="resp_nope", input="Hi")
    assert missing.value.body["param"] == "previous_response_id"


def test_openai_gets_a_responses_request_with_the_whole_conversation(client, fake, monkeypatch):
    """Passed through to OpenAI's own Responses API: the gateway keeps the chain (OpenAI stores nothing), so the
    upstream gets the whole input as items and never the gateway's response ids."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    reconfigured()
    first = client.responses.create(
        model="openai:gpt-5-mini", input="My name is Ada.", instructions="Be kind."
    )
    second = client.responses.create(
        model="openai:gpt-5-mini",
        previous_response_id=first.id,
        input="What is my name?",
        max_output_tokens=64,
    )
    assert second.output_text == "Hello from fake openai_responses!"
    assert second.id.startswith("resp_")
    assert second.id != first.id
    assert second.previous_response_id == first.id
    path, _, sent = fake.requests[-1]
    assert path == "/v1/responses"
    assert sent["model"] == "gpt-5-mini"
    assert sent["store"] is False
    assert "previous_response_id" not in sent
    assert sent["max_output_tokens"] == 64
    assert [(i["type"], i.get("role")) for i in sent["input"]] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert sent["input"][1]["content"][0] == {
        "type": "output_text",
        "text": "Hello from fake openai_responses!",
    }
    events = drain_events()
    assert [(e.model, e.input_tokens, e.output_tokens) for e in events] == [("openai:gpt-5-mini", 12, 5)] * 2


def test_stored_responses_belong_to_their_tenant_and_follow_store_and_retention(
    gateway_url, client, other_tenant, make_key, fake, monkeypatch, settings
):
    from billing.plans import assign_plan
    from llm.tasks import purge_stored_responses

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    reconfigured()
    mine = client.responses.create(model="openai:gpt-5-mini", input="secret plans")
    assign_plan(tenant=other_tenant, plan_slug="enterprise")
    stranger = _client(gateway_url, make_key(other_tenant, scopes=["gateway"]))
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError):
        stranger.responses.create(model="openai:gpt-5-mini", previous_response_id=mine.id, input="continue")
    assert client.responses.retrieve(mine.id).output_text  # still there for its owner

    unstored = client.responses.create(model="openai:gpt-5-mini", input="Hi", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)

    StoredResponse.objects.unscoped().filter(response_id=mine.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(mine.id)  # past its retention: gone, even before the purge
    assert purge_stored_responses() == 1
    assert not StoredResponse.objects.unscoped().filter(response_id=mine.id).exists()
    settings.RESPONSES_RETENTION_DAYS = 0
    kept_none = client.responses.create(model="openai:gpt-5-mini", input="Hi")
    assert not StoredResponse.objects.unscoped().filter(response_id=kept_none.id).exists()


def test_bad_requests_are_openai_errors_and_nothing_is_metered(client, fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    reconfigured()
    with pytest.raises(openai.BadRequestError) as no_input:
        client.responses.create(model="openai:gpt-5-mini", input=[])
    assert no_input.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as server_tool:
        client.responses.create(model="openai:gpt-5-mini", input="Hi", tools=[{"type": "web_search"}])
    assert "only function tools" in server_tool.value.body["message"]
    assert drain_events() == []


def test_stored_responses_go_with_their_tenant_and_the_prompt_never_reaches_the_logs(
    client, tenant, fake, monkeypatch, caplog
):
    import logging

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    reconfigured()
    secret_prompt = "the launch code is " + "7" * 12
    stored = client.responses.create(model="openai:gpt-5-mini", input=secret_prompt, stream=False)
    assert StoredResponse.objects.unscoped().filter(response_id=stored.id).exists()
    assert secret_prompt not in caplog.text
    tenant.delete()
    assert not StoredResponse.objects.unscoped().filter(response_id=stored.id).exists()
