"""resolve_route for every model form, EU residency, the warm path without queries, call-time SSRF checks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llm.calls import resolution
from llm.calls.resolution import RouteError, resolve_route
from llm.config import versions
from llm.config.credentials import credential_create
from llm.config.preferences import preferences_save
from llm.config.routes import route_create
from tenants.audit import SYSTEM
from tests.llm_config.inputs import credential_input, preferences_input, route_input

pytestmark = pytest.mark.django_db

PLATFORM_KEYS = (
    "ANTHROPIC",
    "OPENAI",
    "GOOGLE",
    "MISTRAL",
    "OPENROUTER",
    "COHERE",
    "DEEPSEEK",
    "XAI",
    "GROQ",
    "OLLAMA",
)


@pytest.fixture
def keys(monkeypatch):
    """Platform keys in the environment: keys("ANTHROPIC", "OPENROUTER")."""
    for name in PLATFORM_KEYS:
        monkeypatch.delenv(f"{name}_API_KEY", raising=False)
        monkeypatch.delenv(f"{name}_BASE_URL", raising=False)

    def set_keys(*names: str) -> None:
        for name in names:
            monkeypatch.setenv(f"{name}_API_KEY", f"sk-platform-{name.lower()}-0000")
        resolution.forget_env()

    return set_keys


@pytest.fixture(autouse=True)
def _plans_allow(monkeypatch):
    import billing.plans

    monkeypatch.setattr(billing.plans, "plan_allows_platform", lambda tenant: True)


def resolve(tenant, model, agent=None, **kw):
    return resolve_route(tenant_id=tenant.id, agent_id=agent.id if agent else None, model=model, **kw)


def save(tenant, agent=None, **data):
    return preferences_save(
        tenant=tenant, agent=agent, actor=SYSTEM, data=preferences_input(tenant, agent, **data)
    )


def test_default_is_the_platform_default_model(tenant, keys):
    keys("ANTHROPIC")
    route = resolve(tenant, "default")
    (t,) = route.targets
    assert (route.name, t.model_id, t.provider, t.protocol, t.mode) == (
        "default",
        "anthropic:claude-sonnet-4.5",
        "anthropic",
        "anthropic",
        "platform",
    )
    assert (t.base_url, t.upstream_model, t.api_key) == (
        "https://api.anthropic.com",
        "claude-sonnet-4-5",
        "sk-platform-anthropic-0000",
    )
    assert (t.input_usd_per_mtok, t.output_usd_per_mtok) == (Decimal(3), Decimal(15))
    assert t.params == {"temperature": 0.7, "max_tokens": 4096}
    assert t.max_output_tokens == 64000
    assert "sk-platform" not in repr(route)


def test_platform_base_url_from_the_environment(tenant, keys, monkeypatch):
    keys("OPENAI")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    resolution.forget_env()
    assert resolve(tenant, "openai:gpt-5-mini").targets[0].base_url == "http://127.0.0.1:9999/v1"
    assert resolution.platform_target_for("openai:gpt-5-mini").upstream_model == "gpt-5-mini"


def test_platform_without_the_providers_key_goes_through_openrouter(tenant, keys):
    keys("OPENROUTER")
    t = resolve(tenant, "anthropic:claude-sonnet-4.5").targets[0]
    assert (t.provider, t.upstream_model, t.base_url, t.model_id) == (
        "openrouter",
        "anthropic/claude-sonnet-4.5",
        "https://openrouter.ai/api/v1",
        "anthropic:claude-sonnet-4.5",
    )
    assert t.input_usd_per_mtok == Decimal(3)


def test_platform_without_any_key_is_a_clear_error_that_names_no_environment_variable(tenant, keys, caplog):
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "default")
    assert exc.value.code == "model_unavailable"
    assert "not available on this platform" in exc.value.message
    assert "_API_KEY" not in exc.value.message  # the tenant is told; the operator reads the log
    assert "ANTHROPIC_API_KEY nor OPENROUTER_API_KEY" in caplog.text
    assert resolution.platform_target_for("anthropic:claude-sonnet-4.5") is None


def test_platform_disabled_on_the_installation(tenant, keys, settings):
    keys("ANTHROPIC")
    save(tenant, mode="platform", model="anthropic:claude-haiku-4.5")
    settings.PLATFORM_MANAGED_LLM_ENABLED = False
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "default")
    assert exc.value.code == "platform_mode_disabled"


def test_without_preferences_and_without_platform_access_the_workspace_is_not_configured(
    tenant, keys, settings, monkeypatch
):
    """Not "claude-sonnet-4.5 is not available": the workspace never chose a model. The message says where to set
    one up and names no environment variable, with or without platform keys on the installation."""
    import billing.plans

    monkeypatch.setattr(billing.plans, "plan_allows_platform", lambda tenant: False)
    for platform_keys in ((), ("ANTHROPIC", "OPENROUTER")):
        keys(*platform_keys)
        for model in (
            "default",
            "anthropic:claude-sonnet-4.5",
            "openrouter:meta-llama/llama-3.1-70b-instruct",
        ):
            with pytest.raises(RouteError) as exc:
                resolve(tenant, model)
            assert exc.value.code == "llm_not_configured"
            assert exc.value.message.startswith("No LLM is configured for this workspace yet")
            assert exc.value.message.endswith("/settings/llm/?configure")
            assert "_API_KEY" not in exc.value.message
    settings.PLATFORM_MANAGED_LLM_ENABLED = False
    monkeypatch.setattr(billing.plans, "plan_allows_platform", lambda tenant: True)
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "default")
    assert exc.value.code == "llm_not_configured"


def test_default_with_fallbacks_and_params(tenant, keys):
    keys("OPENAI", "ANTHROPIC")
    save(
        tenant,
        mode="platform",
        model="openai:gpt-5",
        temperature=0.2,
        max_tokens=1000,
        fallbacks=["anthropic:claude-haiku-4.5"],
    )
    route = resolve(tenant, "default")
    assert [t.model_id for t in route.targets] == ["openai:gpt-5", "anthropic:claude-haiku-4.5"]
    assert all(t.params == {"temperature": 0.2, "max_tokens": 1000} for t in route.targets)
    assert not route.weighted


def test_byok_uses_the_tenants_key(tenant, keys):
    save(tenant, mode="byok", model="anthropic:claude-haiku-4.5", api_key="sk-ant-tenant-key-123456")
    t = resolve(tenant, "default").targets[0]
    assert (t.mode, t.provider, t.api_key, t.upstream_model) == (
        "byok",
        "anthropic",
        "sk-ant-tenant-key-123456",
        "claude-haiku-4-5",
    )
    assert t.credential_id is not None
    assert "sk-ant-tenant" not in repr(t)


def test_byok_groq_key_goes_to_groqs_openai_compatible_api(tenant, keys):
    credential_create(
        tenant=tenant,
        actor=SYSTEM,
        data=credential_input(tenant, kind="groq", api_key="sk-test-groq-tenant-1234"),
    )
    save(tenant, mode="byok", model="groq:llama-3.3-70b")
    t = resolve(tenant, "default").targets[0]
    assert (t.mode, t.provider, t.protocol, t.base_url, t.api_key, t.upstream_model) == (
        "byok",
        "groq",
        "openai_compat",
        "https://api.groq.com/openai/v1",
        "sk-test-groq-tenant-1234",
        "llama-3.3-70b-versatile",
    )
    assert (t.input_usd_per_mtok, t.output_usd_per_mtok) == (Decimal("0.59"), Decimal("0.79"))
    assert t.credential_id is not None


def test_byok_falls_back_to_the_openrouter_key(tenant, keys):
    credential_create(
        tenant=tenant,
        actor=SYSTEM,
        data=credential_input(tenant, kind="openrouter", api_key="sk-or-v1-tenant-1234"),
    )
    save(tenant, mode="byok", model="google:gemini-2.5-flash")
    t = resolve(tenant, "google:gemini-2.5-flash").targets[0]
    assert (t.provider, t.upstream_model, t.api_key, t.eu_hosted) == (
        "openrouter",
        "google/gemini-2.5-flash",
        "sk-or-v1-tenant-1234",
        False,
    )
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "cohere:embed-v4.0", embeddings=True)  # no OpenRouter id, no Cohere key
    assert exc.value.code == "credential_missing"


def test_openrouter_names(tenant, keys):
    credential_create(
        tenant=tenant,
        actor=SYSTEM,
        data=credential_input(tenant, kind="openrouter", api_key="sk-or-v1-tenant-1234"),
    )
    save(tenant, mode="byok", model="openai:gpt-5")
    unknown = resolve(tenant, "openrouter:meta-llama/llama-3.1-70b-instruct").targets[0]
    assert (unknown.upstream_model, unknown.mode, unknown.cost_reported) == (
        "meta-llama/llama-3.1-70b-instruct",
        "byok",
        True,
    )
    # metered at the cost OpenRouter reports; reserved at the catalog's highest prices
    assert (unknown.input_usd_per_mtok, unknown.output_usd_per_mtok) == (Decimal(3), Decimal(15))
    known = resolve(tenant, "openrouter:openai/gpt-5").targets[0]
    assert (known.input_usd_per_mtok, known.cost_reported) == (Decimal("1.25"), False)


def test_openrouter_names_in_platform_mode_use_the_platform_key(tenant, keys):
    keys("OPENROUTER")
    t = resolve(tenant, "openrouter:x-ai/grok-4-fast").targets[0]
    assert (t.mode, t.api_key, t.output_usd_per_mtok) == (
        "platform",
        "sk-platform-openrouter-0000",
        Decimal("0.5"),
    )


def test_custom_mode(tenant, keys):
    save(
        tenant,
        mode="custom",
        model="llama-3.3-70b",
        custom_endpoint={
            "kind": "openai_compatible",
            "base_url": "http://127.0.0.1:8000/v1",
            "api_key": "vllm-token-123456",
            "input_usd_per_mtok": 0.4,
            "headers": {"X-Team": "ml"},
        },
    )
    t = resolve(tenant, "default").targets[0]
    assert (t.model_id, t.provider, t.protocol, t.upstream_model, t.mode) == (
        "custom:llama-3.3-70b",
        "openai_compatible",
        "openai_compat",
        "llama-3.3-70b",
        "custom",
    )
    assert (t.api_key, t.input_usd_per_mtok, t.output_usd_per_mtok) == (
        "vllm-token-123456",
        Decimal("0.4"),
        Decimal(0),
    )
    assert t.options == {"headers": {"X-Team": "ml"}}
    assert "X-Team" not in repr(t)
    assert resolve(tenant, "qwen2.5:7b").targets[0].upstream_model == "qwen2.5:7b"
    assert resolve(tenant, "openai:gpt-5").targets[0].upstream_model == "gpt-5"


def test_custom_azure_and_bedrock_options(tenant, keys):
    save(
        tenant,
        mode="custom",
        model="gpt-4o",
        custom_endpoint={
            "kind": "azure_openai",
            "base_url": "https://acme.openai.azure.com",
            "api_key": "azure-key-1234567890",
            "deployment": "gpt4o-prod",
            "api_version": "2024-10-21",
        },
    )
    t = resolve(tenant, "default").targets[0]
    assert (t.protocol, t.options) == (
        "azure_openai",
        {"deployment": "gpt4o-prod", "api_version": "2024-10-21"},
    )
    save(
        tenant,
        custom_endpoint={
            "kind": "bedrock",
            "region": "eu-central-1",
            "access_key_id": "AKIA0000",
            "secret_access_key": "bedrock-secret-000000",
        },
        model="anthropic.claude-v2",
    )
    t = resolve(tenant, "default").targets[0]
    assert t.protocol == "bedrock"
    assert t.eu_hosted is True
    assert t.options == {
        "region": "eu-central-1",
        "access_key_id": "AKIA0000",
        "secret_access_key": "bedrock-secret-000000",
    }
    assert t.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"


def test_ollama_names(tenant, keys):
    credential_create(
        tenant=tenant,
        actor=SYSTEM,
        data=credential_input(tenant, kind="ollama", base_url="http://127.0.0.1:11434/v1"),
    )
    t = resolve(tenant, "ollama:llama3:8b").targets[0]
    assert (t.model_id, t.upstream_model, t.base_url, t.mode, t.input_usd_per_mtok) == (
        "ollama:llama3:8b",
        "llama3:8b",
        "http://127.0.0.1:11434/v1",
        "custom",
        Decimal(0),
    )


def test_named_route_with_weights_and_cache(tenant, keys):
    keys("OPENAI", "GOOGLE", "ANTHROPIC")
    route_create(
        tenant=tenant,
        actor=SYSTEM,
        data=route_input(
            tenant,
            **{
                "name": "summaries",
                "cache_ttl_seconds": 120,
                "targets": [
                    {"model": "openai:gpt-5-mini", "weight": 70, "params": {"temperature": 0}},
                    {"model": "google:gemini-2.5-flash", "weight": 30},
                    {"model": "anthropic:claude-haiku-4.5"},
                ],
            },
        ),
    )
    route = resolve(tenant, "route:summaries")
    assert route.name == "route:summaries"
    assert route.weighted
    assert route.cache_ttl == 120
    assert [t.weight for t in route.targets] == [70, 30, 0]
    assert route.targets[0].params["temperature"] == 0
    with pytest.raises(RouteError, match="No route named"):
        resolve(tenant, "route:nope")


def test_unknown_model_is_a_route_error(tenant, keys):
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "gpt-4-turbo-preview")
    assert exc.value.code == "model_not_found"
    assert exc.value.param == "model"


def test_embeddings(tenant, keys):
    keys("OPENAI", "ANTHROPIC")
    assert (
        resolve(tenant, "openai:text-embedding-3-small", embeddings=True).targets[0].upstream_model
        == "text-embedding-3-small"
    )
    # No preferences: the platform's default chat model (Anthropic) cannot embed and none is chosen: a clear
    # refusal, not another provider's model behind the tenant's back
    with pytest.raises(RouteError) as missing:
        resolve(tenant, "default", embeddings=True)
    assert missing.value.code == "embedding_model_missing"
    save(tenant, mode="platform", model="openai:gpt-5")
    assert resolve(tenant, "default", embeddings=True).targets[0].model_id == "openai:text-embedding-3-small"
    with pytest.raises(RouteError):
        resolve(tenant, "openai:gpt-5", embeddings=True)
    with pytest.raises(RouteError):
        resolve(tenant, "openai:text-embedding-3-small")


def test_agent_preferences_apply_to_the_agent_only(tenant, agent, keys):
    keys("OPENAI", "ANTHROPIC")
    save(tenant, mode="platform", model="openai:gpt-5")
    assert resolve(tenant, "default", agent=agent).targets[0].model_id == "openai:gpt-5"
    save(tenant, agent=agent, model="anthropic:claude-haiku-4.5")
    assert resolve(tenant, "default", agent=agent).targets[0].model_id == "anthropic:claude-haiku-4.5"
    assert resolve(tenant, "default").targets[0].model_id == "openai:gpt-5"


def test_eu_only_tenant_never_gets_a_non_eu_target(tenant, keys):
    keys("MISTRAL", "OPENAI", "OPENROUTER")
    save(tenant, mode="platform", model="mistral:mistral-large", fallbacks=["mistral:mistral-medium-3.1"])
    tenant.eu_only = True
    tenant.save()
    versions.bump_config_version(tenant.id)
    route = resolve(tenant, "default")
    assert route.eu_only
    assert all(t.eu_hosted for t in route.targets)
    for model in ("openai:gpt-5", "openrouter:mistralai/mistral-large"):
        with pytest.raises(RouteError) as exc:
            resolve(tenant, model)
        assert exc.value.code in ("model_not_eu", "model_unavailable")


def test_eu_only_drops_non_eu_fallbacks_and_refuses_openrouter_detours(tenant, keys):
    keys("OPENAI", "OPENROUTER")  # no MISTRAL key: Mistral would go through OpenRouter, which is not EU
    save(tenant, mode="platform", model="openai:gpt-5", fallbacks=["anthropic:claude-haiku-4.5"])
    route_create(
        tenant=tenant,
        actor=SYSTEM,
        data=route_input(
            tenant,
            **{"name": "chat", "targets": ["mistral:mistral-large", "openai:gpt-5"]},
        ),
    )
    tenant.eu_only = True
    tenant.save()
    versions.bump_config_version(tenant.id)
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "route:chat")
    assert exc.value.code == "model_not_eu"
    resolution.forget_env()
    import os

    os.environ["MISTRAL_API_KEY"] = "sk-platform-mistral"
    try:
        resolution.forget_env()
        versions.bump_config_version(tenant.id)
        route = resolve(tenant, "route:chat")
        assert [t.model_id for t in route.targets] == ["mistral:mistral-large"]
    finally:
        del os.environ["MISTRAL_API_KEY"]


def test_warm_resolution_runs_no_query(tenant, keys, django_assert_num_queries):
    keys("ANTHROPIC", "OPENAI")
    first = resolve(tenant, "default")
    with django_assert_num_queries(0):
        assert resolve(tenant, "default") is first
    save(tenant, mode="platform", model="openai:gpt-5")  # bumps the config version
    assert resolve(tenant, "default").targets[0].model_id == "openai:gpt-5"
    version = versions.config_version(tenant.id)
    versions.bump_config_version()  # a catalog change makes every tenant's version change
    assert versions.config_version(tenant.id) != version


def test_call_time_ssrf_check_when_dns_changes(tenant, keys, dns, settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    dns["llm.example.com"] = ["93.184.216.34"]
    save(
        tenant,
        mode="custom",
        model="m",
        custom_endpoint={"kind": "openai_compatible", "base_url": "https://llm.example.com/v1"},
    )
    assert resolve(tenant, "default").targets[0].base_url == "https://llm.example.com/v1"
    dns["llm.example.com"] = ["10.0.0.7"]
    from llm.config import ssrf

    ssrf.clear_dns_cache()
    versions.bump_config_version(tenant.id)
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "default")
    assert exc.value.code == "endpoint_blocked"
    assert "private" in exc.value.message


def test_a_route_whose_primary_a_mode_change_broke_falls_through_and_is_reported(tenant, keys):
    """Saved under custom mode, `custom:gpt-4o-mini` names the workspace's endpoint; after a switch to BYOK it
    names nothing. A call through the route goes to the next target that works (not a 400), and route_problems
    says which target is skipped and why; with no target left the error names the first one's reason."""
    credential_create(
        tenant=tenant, actor=SYSTEM, data=credential_input(tenant, kind="openai", api_key="sk-test-openai-1")
    )
    save(
        tenant,
        mode="custom",
        model="gpt-4o-mini",
        custom_endpoint={"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
    )
    route = route_create(
        tenant=tenant,
        actor=SYSTEM,
        data=route_input(tenant, name="support", targets=["custom:gpt-4o-mini", "openai:gpt-5-mini"]),
    )
    assert resolution.route_problems(tenant.id, [route]) == {}
    assert [t.mode for t in resolve(tenant, "route:support").targets] == ["custom", "custom"]

    save(tenant, mode="byok", model="openai:gpt-5-mini")
    resolved = resolve(tenant, "route:support")
    assert [(t.model_id, t.mode) for t in resolved.targets] == [("openai:gpt-5-mini", "byok")]
    (problem,) = resolution.route_problems(tenant.id, [route])[route.pk]
    assert problem["model"] == "custom:gpt-4o-mini"
    assert "only the “Enterprise custom endpoint” mode uses" in problem["reason"]

    route.targets = [{"model": "custom:gpt-4o-mini"}, {"model": "mistral:mistral-large"}]
    route.save()
    versions.bump_config_version(tenant.id)
    with pytest.raises(RouteError) as exc:
        resolve(tenant, "route:support")
    assert exc.value.code == "model_unavailable"
    assert "No target of route:support can be reached" in exc.value.message
    assert "custom:gpt-4o-mini" in exc.value.message
