"""Callable = listed = saveable, through the gateway against the fake providers: OpenRouter models outside the
catalog metered at the cost OpenRouter reports, unpriced targets refused at save and never called (nor metered at
$0), `/v1/models` listing what the key can call, and a managed agent's platform calls kept to its tier."""

from __future__ import annotations

import logging
from decimal import Decimal

import httpx
import openai
import pytest

from tests.fakes.upstream import REPORTED_COST
from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def platform_env(monkeypatch, fake):
    """The platform's keys reach OpenAI, Anthropic and MiniMax (the fake); no OpenRouter key."""
    for prefix, suffix in (("OPENAI", "/v1"), ("ANTHROPIC", ""), ("MINIMAX", "/v1")):
        monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
        monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    reconfigured()


def _sdk(gateway_url, key):
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)


def _save(client, body, agent=None):
    response = client.post("/api/llm/preferences" + (f"?agent={agent}" if agent else ""), body, format="json")
    reconfigured()
    return response


def _catalog_changed():
    from llm.calls.resolution import clear_route_cache
    from llm.config import catalog
    from llm.config.versions import bump_config_version

    bump_config_version(None)
    catalog.forget_memo()
    clear_route_cache()
    reconfigured()


@pytest.fixture
def unprice():
    """unprice(model_id): an admin removed a catalog model's prices (this process forgets that after the test)."""
    from llm.models import CatalogModel

    def remove(model_id):
        CatalogModel.objects.filter(id=model_id).update(input_usd_per_mtok=None, output_usd_per_mtok=None)
        _catalog_changed()

    yield remove
    _catalog_changed()


# --- OpenRouter models outside the catalog ------------------------------------------------------------------


@pytest.fixture
def openrouter_byok(gateway_url, fake, tenant, make_key, manage_client):
    """A free workspace calling OpenRouter (the fake) with its own key; returns an SDK client."""
    saved = manage_client.post(
        "/api/llm/credentials",
        {"kind": "openrouter", "api_key": "sk-test-openrouter", "base_url": fake.url + "/v1"},
        format="json",
    )
    assert saved.status_code == 201, saved.content
    response = _save(manage_client, {"mode": "byok", "model": "openrouter:acme/tiny-model"})
    assert response.status_code == 200, response.content
    return _sdk(gateway_url, make_key(tenant, scopes=["gateway"]))


def test_an_openrouter_model_outside_the_catalog_is_metered_at_the_cost_openrouter_reports(
    openrouter_byok, gateway_url, fake
):
    reply = openrouter_byok.chat.completions.with_raw_response.create(model="default", messages=HI)
    assert "cost" not in reply.http_response.json()["usage"]  # the client sees OpenAI's usage shape
    chunks = list(
        openrouter_byok.chat.completions.create(
            model="openrouter:acme/tiny-model",
            messages=HI,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.completion_tokens == 5
    events = drain_events()
    assert [e.model for e in events] == ["openrouter:acme/tiny-model"] * 2
    for event in events:
        assert (event.mode, event.provider, event.status) == ("byok", "openrouter", "ok")
        assert event.cost_usd == Decimal(str(REPORTED_COST))
        assert event.cost_input_usd + event.cost_output_usd == event.cost_usd
        assert event.tcu == 13  # ceil(0.000123 / 0.00001)
        assert not event.cost_estimated
    assert {r[1]["authorization"] for r in fake.requests if r[0] == "/v1/chat/completions"} == {
        "Bearer sk-test-openrouter"
    }


def test_without_a_reported_cost_the_call_is_metered_at_the_conservative_price_and_flagged(
    openrouter_byok, caplog
):
    with caplog.at_level(logging.WARNING, logger="llm.metering.pricing"):
        openrouter_byok.chat.completions.create(model="openrouter:acme/no-cost", messages=HI)
    (event,) = drain_events()
    # the catalog's highest prices, $3 / $15 per 1M tokens: 12 × 3/1M + 5 × 15/1M, never $0
    assert event.cost_usd == Decimal("0.000111")
    assert event.cost_estimated
    assert "reported no cost" in caplog.text


# --- unpriced targets ---------------------------------------------------------------------------------------


@pytest.fixture
def enterprise(tenant, platform_env):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


def test_an_unpriced_fallback_is_refused_at_save(enterprise, manage_client, unprice):
    unprice("anthropic:claude-haiku-4.5")
    response = _save(
        manage_client,
        {"mode": "platform", "model": "openai:gpt-5-mini", "fallbacks": ["anthropic:claude-haiku-4.5"]},
    )
    assert response.status_code == 400
    assert "no price" in response.json()["fallbacks"][0]
    routes = manage_client.post(
        "/api/llm/routes",
        {"name": "chat", "targets": ["openai:gpt-5-mini", "anthropic:claude-haiku-4.5"]},
        format="json",
    )
    assert routes.status_code == 400
    assert "no price" in routes.json()["targets"][0]


def test_an_unpriced_fallback_saved_before_is_skipped_never_called_nor_metered(
    gateway_url, enterprise, manage_client, make_key, fake, monkeypatch, caplog, unprice
):
    saved = _save(
        manage_client,
        {"mode": "platform", "model": "openai:gpt-5-mini", "fallbacks": ["anthropic:claude-haiku-4.5"]},
    )
    assert saved.status_code == 200, saved.content
    unprice("anthropic:claude-haiku-4.5")  # an admin removed its price afterwards
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url + "/status/503/v1")  # the primary is down
    reconfigured()
    sdk = _sdk(gateway_url, make_key(enterprise, scopes=["gateway"]))
    with (
        caplog.at_level(logging.WARNING, logger="llm.calls.resolution"),
        pytest.raises(openai.APIStatusError) as info,
    ):
        sdk.chat.completions.create(model="default", messages=HI)
    assert info.value.status_code == 502
    assert not [r for r in fake.requests if r[0] == "/v1/messages"], "the unpriced fallback was called"
    assert "anthropic:claude-haiku-4.5 skipped (model_price_unknown)" in caplog.text
    (event,) = drain_events()
    assert (event.model, event.status, event.cost_usd) == ("openai:gpt-5-mini", "error", 0)


def test_an_unpriced_model_is_refused_not_metered_at_zero(gateway_url, enterprise, make_key, fake, unprice):
    unprice("openai:gpt-5-mini")
    sdk = _sdk(gateway_url, make_key(enterprise, scopes=["gateway"]))
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="openai:gpt-5-mini", messages=HI)
    assert info.value.body["code"] == "model_price_unknown"
    assert not [r for r in fake.requests if r[0] == "/v1/chat/completions"]


# --- /v1/models ---------------------------------------------------------------------------------------------


def test_models_of_a_free_byok_workspace_with_only_an_anthropic_key_are_anthropics(
    gateway_url, tenant, make_key, manage_client, platform_env
):
    saved = _save(
        manage_client,
        {"mode": "byok", "model": "anthropic:claude-haiku-4.5", "api_key": "sk-test-anthropic-tenant"},
    )
    assert saved.status_code == 200, saved.content
    ids = [m.id for m in _sdk(gateway_url, make_key(tenant, scopes=["gateway"])).models.list()]
    assert ids[0] == "default"
    assert {"anthropic:claude-haiku-4.5", "anthropic:claude-sonnet-4.5"} <= set(ids)
    # neither the platform's models (the free plan has none) nor another provider's
    assert all(i.startswith("anthropic:") for i in ids[1:]), ids


def test_models_of_a_free_workspace_without_keys_list_nothing_it_cannot_call(
    gateway_url, tenant, make_key, platform_env
):
    assert [m.id for m in _sdk(gateway_url, make_key(tenant, scopes=["gateway"])).models.list()] == []


def test_a_free_workspace_in_platform_mode_is_told_to_use_managed_llm_without_env_names(
    gateway_url, tenant, make_key, platform_env
):
    from llm.models import Preferences

    # saved in platform mode while the plan included platform models (a downgrade since)
    Preferences.objects.for_tenant(tenant).create(tenant=tenant, mode="platform", model="openai:gpt-5-mini")
    reconfigured()
    with pytest.raises(openai.PermissionDeniedError) as info:
        _sdk(gateway_url, make_key(tenant, scopes=["gateway"])).chat.completions.create(
            model="openai:gpt-5-mini", messages=HI
        )
    assert info.value.body["code"] == "platform_mode_not_allowed"
    assert "Use managed LLM" in info.value.body["message"]
    assert "_API_KEY" not in info.value.body["message"]


def test_an_unreachable_platform_model_names_no_environment_variable(gateway_url, enterprise, make_key):
    response = httpx.post(
        gateway_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {make_key(enterprise, scopes=['gateway'])}"},
        json={"model": "google:gemini-2.5-flash", "messages": HI},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_unavailable"
    assert "_API_KEY" not in response.text


# --- managed tiers ------------------------------------------------------------------------------------------


@pytest.fixture
def managed(tenant):
    """managed(agent, "starter"): put an agent (None: the workspace's default agent) on a managed tier, as an
    operator does (the seeded tiers: Starter, Pro, Ultra)."""
    from billing.managed import managed_set
    from tenants.audit import SYSTEM

    def put(agent, tier):
        managed_set(tenant=tenant, actor=SYSTEM, agent=agent, tier_slug=tier)
        reconfigured()

    return put


@pytest.fixture
def starter_agent(gateway_url, tenant, agent, managed, make_key, platform_env):
    """A free workspace whose support bot is on Starter; returns an SDK client with the bot's key."""
    managed(agent, "starter")
    return _sdk(gateway_url, make_key(tenant, scopes=["gateway"], agent=agent))


def test_a_managed_agents_default_is_its_tiers_first_model_on_a_free_plan(starter_agent, fake):
    reply = starter_agent.chat.completions.create(model="default", messages=HI)
    assert reply.choices[0].message.content.startswith("Hello from fake")
    (event,) = drain_events()
    assert (event.mode, event.model, event.provider) == ("platform", "minimax:minimax-m2.5", "minimax")
    assert event.cost_usd > 0


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("anthropic:claude-sonnet-4", "Claude Sonnet 4 is not in Starter; Ultra includes it."),
        ("openai:gpt-4o-mini", "GPT-4o Mini is not in Starter; Pro includes it."),
        (
            "anthropic:claude-sonnet-4.5",
            "Claude Sonnet 4.5 is not in Starter, and no managed tier includes it",
        ),
    ],
)
def test_a_managed_agent_naming_a_model_outside_its_tier_is_told_which_tier_has_it(
    starter_agent, fake, model, message
):
    with pytest.raises(openai.BadRequestError) as info:
        starter_agent.chat.completions.create(model=model, messages=HI)
    assert info.value.body["code"] == "model_not_in_tier"
    assert info.value.body["message"].startswith(message)
    assert not fake.requests


def test_models_of_a_managed_agent_are_its_tiers(starter_agent, monkeypatch):
    assert [m.id for m in starter_agent.models.list()] == ["default", "minimax:minimax-m2.5"]
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-test-platform")  # now the platform reaches Mistral Small too
    reconfigured()
    assert [m.id for m in starter_agent.models.list()] == [
        "default",
        "mistral:mistral-small",
        "minimax:minimax-m2.5",
    ]


def test_another_agent_of_the_free_workspace_stays_off_the_platform(
    starter_agent, gateway_url, tenant, make_key
):
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    writer = agent_create(tenant=tenant, actor=SYSTEM, slug="writer", name="Writer")
    sdk = _sdk(gateway_url, make_key(tenant, scopes=["gateway"], agent=writer))
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="minimax:minimax-m2.5", messages=HI)
    assert info.value.body["code"] == "llm_not_configured"  # nothing saved and no tier of its own
    assert [m.id for m in sdk.models.list()] == []


def test_a_managed_agents_preferences_refuse_a_model_outside_its_tier(starter_agent, agent, manage_client):
    response = _save(
        manage_client, {"mode": "platform", "model": "anthropic:claude-sonnet-4"}, agent=agent.slug
    )
    assert response.status_code == 400
    assert response.json()["model"] == ["Claude Sonnet 4 is not in Starter; Ultra includes it."]
    saved = _save(manage_client, {"mode": "platform", "model": "minimax:minimax-m2.5"}, agent=agent.slug)
    assert saved.status_code == 200, saved.content
    assert saved.json()["platform_mode_available"] is True


def test_a_managed_agent_without_settings_of_its_own_calls_on_its_tier_under_a_byok_workspace(
    starter_agent, agent, manage_client, gateway_url, tenant, make_key
):
    saved = _save(
        manage_client,
        {"mode": "byok", "model": "anthropic:claude-haiku-4.5", "api_key": "sk-test-anthropic-tenant"},
    )
    assert saved.status_code == 200, saved.content
    starter_agent.chat.completions.create(model="default", messages=HI)
    _sdk(gateway_url, make_key(tenant, scopes=["gateway"])).chat.completions.create(
        model="default", messages=HI
    )
    managed_call, workspace_call = drain_events()
    assert (managed_call.mode, managed_call.model) == ("platform", "minimax:minimax-m2.5")
    assert (workspace_call.mode, workspace_call.model) == ("byok", "anthropic:claude-haiku-4.5")
    shown = manage_client.get(f"/api/llm/preferences?agent={agent.slug}").json()
    assert (shown["mode"], shown["model"], shown["inherited"]) == ("platform", "minimax:minimax-m2.5", True)


def test_a_route_of_a_free_workspace_may_name_a_platform_model_only_a_managed_agent_reaches(
    starter_agent, manage_client
):
    refused = manage_client.post(
        "/api/llm/routes", {"name": "big", "targets": ["anthropic:claude-sonnet-4"]}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["targets"] == ["Target 1: Claude Sonnet 4 is not in Starter; Ultra includes it."]
    made = manage_client.post(
        "/api/llm/routes", {"name": "cheap", "targets": ["minimax:minimax-m2.5"]}, format="json"
    )
    assert made.status_code == 201, made.content
    assert "route:cheap" in [m.id for m in starter_agent.models.list()]
