"""Keys scoped to what they may call (#16): allow-lists on keys and agents, checked on the gateway with no query,
and the auth headers of the major SDKs, each going through the same checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.gateway.conftest import reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI = "openai:gpt-5-mini"
ANTHROPIC = "anthropic:claude-haiku-4.5"


@pytest.fixture
def platform_env(monkeypatch, fake):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-platform")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    for name in ("OPENROUTER_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pro_tenant(tenant, platform_env):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


def _route(tenant, name, targets):
    from llm.config.versions import bump_config_version
    from llm.models import Route

    route = Route.objects.unscoped().create(tenant=tenant, name=name, targets=targets)
    bump_config_version(tenant.id)
    return route


def _chat(gw, key, model, header="authorization"):
    headers = {"Authorization": f"Bearer {key}"} if header == "authorization" else {header: key}
    return gw.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )


def test_a_key_may_call_only_its_allow_list_and_the_403_names_the_list(gw, pro_tenant, make_key):
    key = make_key(pro_tenant, scopes=["gateway"], allowed_models=["openai:*", "route:support"])

    assert _chat(gw, key, OPENAI).status_code == 200
    refused = _chat(gw, key, ANTHROPIC)
    assert refused.status_code == 403
    assert refused.headers["x-request-id"]
    assert refused.json() == {
        "error": {
            "message": "This key may call only: openai:*, route:support.",
            "type": "permission_error",
            "param": "model",
            "code": "model_not_allowed",
        }
    }


def test_a_route_is_checked_by_its_name_not_its_targets(gw, pro_tenant, make_key):
    _route(pro_tenant, "support", [{"model": ANTHROPIC}])
    _route(pro_tenant, "cheap", [{"model": OPENAI}])
    by_route = make_key(pro_tenant, scopes=["gateway"], allowed_models=["route:support"])
    by_provider = make_key(pro_tenant, scopes=["gateway"], allowed_models=["openai:*"])

    assert _chat(gw, by_route, "route:support").status_code == 200  # whatever its targets
    assert _chat(gw, by_route, ANTHROPIC).status_code == 403  # ... but not the target by itself
    assert _chat(gw, by_route, "route:cheap").status_code == 403
    # A key allowed only a provider's models may not call a route, even one whose targets are all that provider.
    refused = _chat(gw, by_provider, "route:cheap")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "This key may call only: openai:*."


def test_default_is_checked_as_the_model_it_resolves_to(gw, pro_tenant, make_key):
    # Without preferences `default` is the platform's default model, an Anthropic one.
    openai_only = make_key(pro_tenant, scopes=["gateway"], allowed_models=["openai:*"])
    anthropic_only = make_key(pro_tenant, scopes=["gateway"], allowed_models=["anthropic:*"])
    default_named = make_key(pro_tenant, scopes=["gateway"], allowed_models=["default"])

    assert _chat(gw, openai_only, "default").status_code == 403
    assert _chat(gw, anthropic_only, "default").status_code == 200
    assert _chat(gw, default_named, "default").status_code == 200
    assert _chat(gw, default_named, OPENAI).status_code == 403


def test_models_lists_only_what_the_key_may_call(gw, pro_tenant, make_key):
    _route(pro_tenant, "support", [{"model": ANTHROPIC}])
    everything = {m["id"] for m in gw.get("/v1/models", headers=_bearer(make_key(pro_tenant))).json()["data"]}
    assert {"default", "route:support", OPENAI, ANTHROPIC} <= everything

    key = make_key(pro_tenant, scopes=["gateway"], allowed_models=["openai:*", "route:support"])
    listed = {m["id"] for m in gw.get("/v1/models", headers=_bearer(key)).json()["data"]}
    assert OPENAI in listed
    assert "route:support" in listed
    assert all(m.startswith("openai:") or m == "route:support" for m in listed), listed
    assert "default" not in listed  # it resolves to an Anthropic model here


def test_an_agents_allow_list_applies_to_its_keys_and_changes_at_once(
    gw, pro_tenant, make_key, manage_client
):
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    agent = agent_create(tenant=pro_tenant, actor=SYSTEM, slug="bot", allowed_models=[OPENAI])
    key = make_key(pro_tenant, scopes=["gateway"], agent=agent)

    assert _chat(gw, key, OPENAI).status_code == 200
    refused = _chat(gw, key, ANTHROPIC)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == f"This agent may call only: {OPENAI}."

    # Widened through the API: the gateway's cached copy of the key is forgotten, no waiting for it to expire.
    changed = manage_client.patch(
        "/api/agents/bot", {"allowed_models": ["openai:*", "anthropic:*"]}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["allowed_models"] == ["openai:*", "anthropic:*"]
    assert _chat(gw, key, ANTHROPIC).status_code == 200


def test_a_keys_allow_list_changed_through_the_api_applies_at_once(gw, pro_tenant, make_key, manage_client):
    from tenants.keys import hash_key
    from tenants.models import ApiKey

    key = make_key(pro_tenant, scopes=["gateway"])
    key_id = ApiKey.objects.unscoped().get(key_hash=hash_key(key)).id
    assert _chat(gw, key, ANTHROPIC).status_code == 200  # cached now, unrestricted

    changed = manage_client.patch(f"/api/keys/{key_id}", {"allowed_models": ["openai:*"]}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["allowed_models"] == ["openai:*"]
    assert _chat(gw, key, ANTHROPIC).status_code == 403


def test_a_bad_allow_list_is_a_field_error_and_changes_nothing(manage_client, tenant):
    from tenants.models import ApiKey

    before = ApiKey.objects.unscoped().count()
    bad = manage_client.post("/api/keys", {"name": "k", "allowed_models": ["gpt 4"]}, format="json")
    assert bad.status_code == 400
    assert "allowed_models" in bad.json()
    assert ApiKey.objects.unscoped().count() == before


def _bearer(key):
    return {"Authorization": f"Bearer {key}"}


HEADERS = ["authorization", "x-api-key", "api-key"]


@pytest.mark.parametrize("header", HEADERS)
def test_every_sdk_header_gets_the_same_checks(gw, pro_tenant, make_key, header):
    from tenants.audit import SYSTEM
    from tenants.keys import apikey_revoke, hash_key
    from tenants.models import ApiKey

    def row(raw):
        return ApiKey.objects.unscoped().get(key_hash=hash_key(raw))

    good = make_key(pro_tenant, scopes=["gateway"], allowed_models=["openai:*"])
    revoked = make_key(pro_tenant, scopes=["gateway"])
    expired = make_key(pro_tenant, scopes=["gateway"])
    manage_only = make_key(pro_tenant, scopes=["manage"])
    apikey_revoke(key=row(revoked), actor=SYSTEM)
    ApiKey.objects.unscoped().filter(id=row(expired).id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    reconfigured()
    unknown = "byok-" + "x" * 43

    assert _chat(gw, good, OPENAI, header).status_code == 200
    assert _chat(gw, good, ANTHROPIC, header).status_code == 403
    for raw, why in [(revoked, "revoked"), (expired, "expired"), (unknown, "unknown")]:
        answer = _chat(gw, raw, OPENAI, header)
        assert answer.status_code == 401, why
        assert answer.json()["error"]["code"] == "invalid_api_key", why
    scope = _chat(gw, manage_only, OPENAI, header)
    assert scope.status_code == 401
    assert "gateway" in scope.json()["error"]["message"]
    listed = gw.get("/v1/models", headers=_bearer(good) if header == "authorization" else {header: good})
    assert listed.status_code == 200
    assert all(m["id"].startswith("openai:") for m in listed.json()["data"])


def test_a_batch_job_made_with_a_key_calls_only_what_the_key_may(pro_tenant, make_key):
    """Jobs run on Celery (eagerly here), not /v1, and are held to the same list."""
    from rest_framework.test import APIClient

    from llm.models import Job

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(pro_tenant, allowed_models=['openai:*'])}")
    items = [{"messages": [{"role": "user", "content": "hi"}]}]
    jobs = {}
    for model in (OPENAI, ANTHROPIC):
        created = client.post("/api/llm/jobs", {"model": model, "requests": items}, format="json")
        assert created.status_code in (200, 201, 202), created.content
        jobs[model] = Job.objects.unscoped().get(pk=created.json()["id"])
    assert (jobs[OPENAI].done_count, jobs[OPENAI].failed_count) == (1, 0)
    assert (jobs[ANTHROPIC].done_count, jobs[ANTHROPIC].failed_count) == (0, 1)
    failed = jobs[ANTHROPIC].items.get()
    assert failed.error == {
        "status": 403,
        "code": "model_not_allowed",
        "message": "This key may call only: openai:*.",
    }


def test_an_agents_assistant_thread_calls_only_what_the_agent_may(pro_tenant):
    from llm.models import Message
    from llm.runtime.assistant import message_post, reply_run, thread_create
    from tenants.audit import SYSTEM
    from tenants.models import Membership
    from tenants.services import agent_create

    agent = agent_create(tenant=pro_tenant, actor=SYSTEM, slug="helper", allowed_models=["openai:*"])
    owner = Membership.objects.unscoped().get(tenant=pro_tenant, role="owner").user
    replies = {}
    for model in (OPENAI, ANTHROPIC):
        thread = thread_create(tenant=pro_tenant, user=owner, model=model, agent=agent)
        _, reply = message_post(thread=thread, content="hi")
        reply_run(reply.id)  # what the Celery task runs (idempotent if it ran eagerly already)
        replies[model] = Message.objects.unscoped().get(id=reply.id)
    assert replies[OPENAI].status == "done"
    assert replies[ANTHROPIC].status == "error"
    assert "This agent may call only: openai:*." in replies[ANTHROPIC].error


def test_the_messages_api_is_held_to_the_list_too(gw, pro_tenant, make_key):
    """Anthropic's Messages ingress (`x-api-key`, Claude Code's model names): the same check, Anthropic's error."""
    key = make_key(pro_tenant, scopes=["gateway"], allowed_models=["openai:*"])
    refused = gw.post(
        "/v1/messages",
        json={"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )
    assert refused.status_code == 403
    body = refused.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert body["error"]["message"] == "This key may call only: openai:*."


def test_defaults_fallbacks_outside_the_list_are_left_out(pro_tenant):
    from llm.calls.admission import CallContext, resolve
    from llm.config.preferences import preferences_save
    from llm.sync import from_sync
    from tenants.audit import SYSTEM
    from tests.llm_config.inputs import preferences_input

    preferences_save(
        tenant=pro_tenant,
        agent=None,
        actor=SYSTEM,
        data=preferences_input(pro_tenant, None, mode="platform", model=OPENAI, fallbacks=[ANTHROPIC]),
    )
    reconfigured()
    open_route = from_sync(resolve, CallContext(tenant_id=pro_tenant.id), "default")
    assert [t.model_id for t in open_route.targets] == [OPENAI, ANTHROPIC]
    scoped = CallContext(tenant_id=pro_tenant.id, key_allowed_models=("openai:*",))
    assert [t.model_id for t in from_sync(resolve, scoped, "default").targets] == [OPENAI]


def test_the_responses_api_is_held_to_the_list_too(gw, pro_tenant, make_key):
    key = make_key(pro_tenant, scopes=["gateway"], allowed_models=["openai:*"])
    refused = gw.post("/v1/responses", json={"model": ANTHROPIC, "input": "hi"}, headers=_bearer(key))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert refused.json()["error"]["message"] == "This key may call only: openai:*."
    assert (
        gw.post("/v1/responses", json={"model": OPENAI, "input": "hi"}, headers=_bearer(key)).status_code
        == 200
    )
