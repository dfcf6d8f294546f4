"""Preferences through the API: defaults, each mode saved with valid data, every rule's field error, agents."""

from __future__ import annotations

import pytest

from llm.models import CatalogModel, Credential, Preferences
from tenants.models import AuditEvent
from tests.llm_config.conftest import SECRET

pytestmark = pytest.mark.django_db
URL = "/api/llm/preferences"


@pytest.fixture
def plan_allows(monkeypatch):
    """Billing's plan check, controllable: plan_allows["ok"] = False to refuse platform mode. The platform reaches
    the catalog through OpenRouter (a platform model no key reaches is refused at save, as the gateway would)."""
    import billing.plans
    from llm.calls.resolution import forget_env

    state = {"ok": True}
    monkeypatch.setattr(billing.plans, "plan_allows_platform", lambda tenant: state["ok"])
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-platform-openrouter-0000")
    forget_env()
    return state


ENDPOINTS = [
    {
        "kind": "openai_compatible",
        "base_url": "http://127.0.0.1:8000/v1",
        "api_key": "vllm-token-123456789",
    },
    {"kind": "ollama", "base_url": "http://127.0.0.1:11434/v1"},
    {
        "kind": "azure_openai",
        "base_url": "https://acme.openai.azure.com",
        "api_key": "azure-key-1234567890",
        "deployment": "gpt-4o-prod",
        "api_version": "2024-10-21",
    },
    {
        "kind": "bedrock",
        "region": "eu-central-1",
        "access_key_id": "AKIAEXAMPLE0000",
        "secret_access_key": "bedrock-secret-abcdefgh1234",
    },
]


def _post(client, body, agent=None):
    return client.post(URL + (f"?agent={agent}" if agent else ""), body, format="json")


def _snapshot():
    return (
        list(Preferences.objects.unscoped().values()),
        list(Credential.objects.unscoped().values()),
        AuditEvent.objects.unscoped().filter(action__startswith="llm.").count(),
    )


def test_defaults_when_nothing_is_saved(manage_client, plan_allows):
    body = manage_client.get(URL).json()
    assert (body["mode"], body["model"], body["temperature"], body["max_tokens"]) == (
        "platform",
        "anthropic:claude-sonnet-4.5",
        0.7,
        4096,
    )
    assert body["saved"] is False
    assert body["fallbacks"] == []
    assert body["eu_only"] is False
    assert body["model_info"]["input_usd_per_mtok"] == 3.0
    assert body["model_info"]["max_output_tokens"] == 64000
    assert body["platform_mode_available"] is True


def test_free_plan_shows_platform_mode_unavailable(manage_client):
    body = manage_client.get(URL).json()
    assert body["platform_mode_available"] is False
    assert "plan" in body["platform_mode_reason"]
    assert body["configured"] is False  # nothing saved and no platform access: nothing to call with


def test_configured_once_saved_or_when_the_plan_includes_platform_models(manage_client, plan_allows):
    assert manage_client.get(URL).json()["configured"] is True  # the plan's platform models
    plan_allows["ok"] = False
    assert manage_client.get(URL).json()["configured"] is False
    saved = _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": SECRET})
    assert saved.status_code == 200, saved.json()
    assert saved.json()["configured"] is True


def test_save_platform_mode(manage_client, plan_allows):
    response = _post(
        manage_client,
        {
            "mode": "platform",
            "model": "openai:gpt-5",
            "temperature": 0.2,
            "max_tokens": 2000,
            "fallbacks": ["anthropic:claude-haiku-4.5"],
        },
    )
    assert response.status_code == 200, response.json()
    body = manage_client.get(URL).json()
    assert (body["mode"], body["model"], body["temperature"], body["max_tokens"], body["saved"]) == (
        "platform",
        "openai:gpt-5",
        0.2,
        2000,
        True,
    )
    assert body["fallbacks"] == ["anthropic:claude-haiku-4.5"]
    assert body["model_info"]["name"] == "GPT-5"


def test_save_byok_with_an_inline_key(manage_client):
    response = _post(
        manage_client, {"mode": "byok", "model": "anthropic:claude-haiku-4.5", "api_key": SECRET}
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["mode"] == "byok"
    assert body["api_key_masked"] == "sk-…3456"
    assert body["credential"]["kind"] == "anthropic"
    assert SECRET not in response.content.decode()
    assert SECRET not in manage_client.get(URL).content.decode()
    # A second save without api_key keeps using the stored key.
    assert _post(manage_client, {"temperature": 1.5}).status_code == 200


def test_save_byok_through_openrouter(manage_client):
    manage_client.post(
        "/api/llm/credentials", {"kind": "openrouter", "api_key": "sk-or-v1-abcdefghijklmnop"}, format="json"
    )
    response = _post(
        manage_client,
        {
            "mode": "byok",
            "model": "openrouter:meta-llama/llama-3.1-70b-instruct",
            "fallbacks": ["google:gemini-2.5-flash"],
        },
    )
    assert response.status_code == 200, response.json()
    assert response.json()["api_key_masked"] == "sk-…mnop"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_save_custom_mode(manage_client, endpoint):
    model = "ollama:llama3:8b" if endpoint["kind"] == "ollama" else "my-model"
    response = _post(
        manage_client,
        {"mode": "custom", "model": model, "custom_endpoint": {**endpoint, "input_usd_per_mtok": 0.5}},
    )
    assert response.status_code == 200, response.json()
    body = manage_client.get(URL).json()
    ce = body["custom_endpoint"]
    assert body["mode"] == "custom"
    assert body["model"] == model
    assert ce["kind"] == endpoint["kind"]
    assert "api_key" not in ce
    assert "secret_access_key" not in ce
    assert ce["input_usd_per_mtok"] == 0.5
    for secret in (endpoint.get("api_key"), endpoint.get("secret_access_key")):
        if secret:
            assert secret not in response.content.decode()
            assert ce["api_key_masked"] == secret[:3] + "…" + secret[-4:]


def _sent_back_with_a_change(client) -> None:
    """GET the settings, change the temperature, POST the whole object back: only the temperature changes."""
    read = client.get(URL).json()
    read["temperature"] = 0.25
    sent = _post(client, read)
    assert sent.status_code == 200, sent.json()
    after = client.get(URL).json()
    assert after["temperature"] == 0.25
    unchanged = {k: v for k, v in read.items() if k not in ("temperature", "updated_at")}
    assert {k: v for k, v in after.items() if k not in ("temperature", "updated_at")} == unchanged


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_what_get_answers_may_be_sent_back_with_a_change(manage_client, endpoint):
    """A script reads the settings, changes one thing and posts the whole object back: what GET adds (masked key,
    flags, model info, …) is accepted and ignored, and the stored secret stays as it was. Unknown keys are still
    refused."""
    model = "ollama:llama3:8b" if endpoint["kind"] == "ollama" else "my-model"
    assert (
        _post(manage_client, {"mode": "custom", "model": model, "custom_endpoint": endpoint}).status_code
        == 200
    )
    _sent_back_with_a_change(manage_client)
    byok = _post(manage_client, {"mode": "byok", "model": "anthropic:claude-haiku-4.5", "api_key": SECRET})
    assert byok.status_code == 200, byok.json()
    _sent_back_with_a_change(manage_client)
    assert Credential.objects.unscoped().count() == 2
    assert _post(manage_client, {"colour": "red"}).json() == {"colour": ["Unknown field."]}


def test_custom_endpoint_change_keeps_the_stored_key(manage_client):
    # On the same origin only: moving it elsewhere needs the key again (tests/security/test_secret_binding.py).
    _post(
        manage_client,
        {
            "mode": "custom",
            "model": "m",
            "custom_endpoint": {
                "kind": "openai_compatible",
                "base_url": "http://127.0.0.1:8000/v1",
                "api_key": "vllm-token-123456789",
            },
        },
    )
    response = _post(
        manage_client,
        {"custom_endpoint": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:8000/openai/v1"}},
    )
    assert response.status_code == 200
    assert response.json()["custom_endpoint"]["api_key_masked"] == "vll…6789"
    assert Credential.objects.unscoped().count() == 1


def _disable_gpt5():
    CatalogModel.objects.filter(pk="openai:gpt-5").update(enabled=False)
    from llm.config.versions import bump_config_version

    bump_config_version()


INVALID = [
    ("mode", {"mode": "cloud"}, "mode", None),
    ("empty model", {"model": ""}, "model", None),
    ("unknown model", {"model": "acme:super-model"}, "model", None),
    ("uncatalogued model of a known provider", {"model": "openai:gpt-99"}, "model", None),
    ("disabled model", {"model": "openai:gpt-5"}, "model", _disable_gpt5),
    ("embedding model", {"model": "openai:text-embedding-3-small"}, "model", None),
    ("EU required, model not EU", {"eu_only": True, "model": "openai:gpt-5"}, "model", None),
    ("temperature too high", {"temperature": 2.5}, "temperature", None),
    ("temperature negative", {"temperature": -0.1}, "temperature", None),
    ("temperature not a number", {"temperature": "hot"}, "temperature", None),
    ("max_tokens too low", {"max_tokens": 99}, "max_tokens", None),
    ("max_tokens too high", {"max_tokens": 128001}, "max_tokens", None),
    ("max_tokens not whole", {"max_tokens": 1000.5}, "max_tokens", None),
    (
        "max_tokens above the model's output limit",
        {"model": "mistral:mistral-large", "max_tokens": 40000},
        "max_tokens",
        None,
    ),
    ("fallbacks not a list", {"fallbacks": "openai:gpt-5"}, "fallbacks", None),
    ("fallback unknown", {"fallbacks": ["nope:nope"]}, "fallbacks", None),
    ("fallback equals primary", {"fallbacks": ["anthropic:claude-sonnet-4.5"]}, "fallbacks", None),
    ("eu_only not boolean", {"eu_only": "yes"}, "eu_only", None),
    ("unknown field", {"colour": "blue"}, "colour", None),
    ("byok without a key", {"mode": "byok", "model": "openai:gpt-5"}, "api_key", None),
    (
        "byok key with spaces",
        {"mode": "byok", "model": "openai:gpt-5", "api_key": "sk-abc def ghi jkl"},
        "api_key",
        None,
    ),
    (
        "byok fallback without a key",
        {
            "mode": "byok",
            "model": "openai:gpt-5",
            "api_key": "sk-test-abcdefghijkl",
            "fallbacks": ["google:gemini-2.5-flash"],
        },
        "fallbacks",
        None,
    ),
    (
        "byok with an OpenRouter model and no OpenRouter key",
        {"mode": "byok", "model": "openrouter:x/y", "api_key_provider": "openai"},
        "api_key",
        None,
    ),
    ("custom without an endpoint", {"mode": "custom", "model": "m"}, "custom_endpoint", None),
    (
        "custom endpoint kind",
        {"mode": "custom", "model": "m", "custom_endpoint": {"kind": "ftp"}},
        "custom_endpoint",
        None,
    ),
    ("ollama model outside custom mode", {"model": "ollama:llama3:8b"}, "model", None),
]


@pytest.mark.parametrize(("label", "body", "field", "setup"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_input_is_a_field_error_and_changes_nothing(
    manage_client, plan_allows, label, body, field, setup
):
    assert (
        _post(manage_client, {"mode": "platform", "model": "anthropic:claude-sonnet-4.5"}).status_code == 200
    )
    if setup:
        setup()
    before = _snapshot()
    response = _post(manage_client, body)
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert isinstance(response.json()[field], list | dict)
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ({"kind": "openai_compatible"}, "base_url"),
        ({"kind": "openai_compatible", "base_url": "file:///etc/passwd"}, "base_url"),
        (
            {
                "kind": "azure_openai",
                "base_url": "https://a.openai.azure.com",
                "api_key": "k" * 20,
                "api_version": "2024-10-21",
            },
            "deployment",
        ),
        (
            {
                "kind": "azure_openai",
                "base_url": "https://a.openai.azure.com",
                "deployment": "d",
                "api_version": "2024-10-21",
            },
            "api_key",
        ),
        ({"kind": "bedrock", "region": "eu-central-1", "access_key_id": "AKIA"}, "secret_access_key"),
        ({"kind": "bedrock", "access_key_id": "AKIA", "secret_access_key": "s" * 20}, "region"),
    ],
)
def test_incomplete_custom_endpoint_names_the_nested_field(manage_client, endpoint, field):
    before = _snapshot()
    response = _post(manage_client, {"mode": "custom", "model": "m", "custom_endpoint": endpoint})
    assert response.status_code == 400
    assert field in response.json()["custom_endpoint"], response.json()
    assert _snapshot() == before


def test_platform_mode_refused_when_disabled_on_the_installation(manage_client, plan_allows, settings):
    settings.PLATFORM_MANAGED_LLM_ENABLED = False
    response = _post(manage_client, {"mode": "platform", "model": "openai:gpt-5"})
    assert response.status_code == 400
    assert "turned off" in response.json()["mode"][0]
    assert not Preferences.objects.unscoped().exists()


def test_platform_mode_refused_when_the_plan_does_not_allow_it(manage_client, plan_allows):
    plan_allows["ok"] = False
    response = _post(manage_client, {"mode": "platform", "model": "openai:gpt-5"})
    assert response.status_code == 400
    assert "plan" in response.json()["mode"][0]


def test_tenant_eu_residency_applies_even_when_the_request_says_otherwise(manage_client, plan_allows, tenant):
    tenant.eu_only = True
    tenant.save()
    response = _post(manage_client, {"model": "openai:gpt-5", "eu_only": False})
    assert response.status_code == 400
    assert "EU" in response.json()["model"][0]
    assert _post(manage_client, {"model": "mistral:mistral-large"}).status_code == 200
    assert manage_client.get(URL).json()["eu_only"] is True


def test_custom_endpoint_must_be_marked_eu_hosted_when_eu_is_required(manage_client):
    body = {
        "mode": "custom",
        "model": "m",
        "eu_only": True,
        "custom_endpoint": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:8000/v1"},
    }
    response = _post(manage_client, body)
    assert response.status_code == 400
    assert "eu_hosted" in response.json()["custom_endpoint"]
    body["custom_endpoint"]["eu_hosted"] = True
    assert _post(manage_client, body).status_code == 200


def test_agent_preferences_inherit_then_override(manage_client, plan_allows, agent):
    _post(manage_client, {"mode": "platform", "model": "openai:gpt-5"})
    inherited = manage_client.get(URL + "?agent=support-bot").json()
    assert inherited["inherited"] is True
    assert inherited["model"] == "openai:gpt-5"
    response = _post(
        manage_client, {"model": "anthropic:claude-haiku-4.5", "temperature": 0.1}, agent="support-bot"
    )
    assert response.status_code == 200
    assert response.json()["agent"] == "support-bot"
    assert manage_client.get(URL + "?agent=support-bot").json()["model"] == "anthropic:claude-haiku-4.5"
    assert manage_client.get(URL).json()["model"] == "openai:gpt-5"
    assert manage_client.delete(URL + "?agent=support-bot").status_code == 204
    assert manage_client.get(URL + "?agent=support-bot").json()["inherited"] is True


def test_unknown_agent_is_404(manage_client):
    assert manage_client.get(URL + "?agent=nobody").status_code == 404
    assert _post(manage_client, {"temperature": 1}, agent="nobody").status_code == 404


def test_saves_are_audited(manage_client, plan_allows):
    _post(manage_client, {"mode": "platform", "model": "openai:gpt-5"})
    events = manage_client.get("/api/audit?action=llm.preferences").json()
    assert events[0]["changes"]["model"] == [None, "openai:gpt-5"]


def test_a_save_that_leaves_route_targets_unreachable_names_them(manage_client):
    custom = {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    assert (
        _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": SECRET}).status_code
        == 200
    )
    first = _post(manage_client, {"mode": "custom", "model": "gpt-4o-mini", "custom_endpoint": custom})
    assert first.status_code == 200, first.json()
    assert first.json()["route_warnings"] == []
    route = manage_client.post(
        "/api/llm/routes",
        {"name": "support", "targets": ["custom:gpt-4o-mini", "openai:gpt-5-mini"]},
        format="json",
    )
    assert route.status_code == 201, route.json()

    back = _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini"})
    assert back.status_code == 200, back.json()
    (warning,) = back.json()["route_warnings"]
    assert (warning["route"], warning["model"]) == ("route:support", "custom:gpt-4o-mini")
    assert warning["reason"]
    again = _post(manage_client, {"temperature": 0.5})  # already unreachable before: no new warning
    assert again.json()["route_warnings"] == []


def test_the_routes_api_says_which_targets_cannot_be_reached(manage_client):
    """What the Routes page marks, `GET /api/llm/routes` (and a route's own GET, create and change) answers too:
    each target's `problem` (null when a call can reach it) and the route's `reachable`."""
    custom = {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": SECRET})
    assert (
        _post(
            manage_client, {"mode": "custom", "model": "gpt-4o-mini", "custom_endpoint": custom}
        ).status_code
        == 200
    )
    support = manage_client.post(
        "/api/llm/routes",
        {"name": "support", "targets": ["custom:gpt-4o-mini", "openai:gpt-5-mini"]},
        format="json",
    ).json()
    assert [t["problem"] for t in support["targets"]] == [None, None]
    assert support["reachable"] is True
    local = manage_client.post(
        "/api/llm/routes", {"name": "local", "targets": ["custom:gpt-4o-mini"]}, format="json"
    ).json()

    assert _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini"}).status_code == 200
    listed = {r["name"]: r for r in manage_client.get("/api/llm/routes").json()}
    skipped, kept = listed["support"]["targets"]
    assert skipped["model"] == "custom:gpt-4o-mini"
    assert skipped["problem"]
    assert kept["problem"] is None
    assert listed["support"]["reachable"] is True
    assert listed["local"]["reachable"] is False
    assert manage_client.get(f"/api/llm/routes/{local['id']}").json() == listed["local"]
    changed = manage_client.patch(f"/api/llm/routes/{local['id']}", {"description": "x"}, format="json")
    assert changed.status_code == 200, changed.json()  # its targets are kept as they are, not re-judged
    assert changed.json()["reachable"] is False
    assert changed.json()["targets"] == listed["local"]["targets"]
    # Turning EU-only on judges the kept targets again: the endpoint is not marked EU-hosted.
    eu = manage_client.patch(f"/api/llm/routes/{local['id']}", {"eu_only": True}, format="json")
    assert eu.status_code == 400
    assert list(eu.json()) == ["targets"]


def test_a_custom_model_outside_custom_mode_is_refused_in_the_routers_words(manage_client):
    """Not "not in the catalog": the endpoint's model is refused because of the mode, and the route check, the
    preferences and the Routes page's mark say so alike."""
    custom = {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": SECRET})
    _post(manage_client, {"mode": "custom", "model": "gpt-4o-mini", "custom_endpoint": custom})
    manage_client.post("/api/llm/routes", {"name": "local", "targets": ["custom:gpt-4o-mini"]}, format="json")
    assert _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini"}).status_code == 200

    refused = manage_client.post(
        "/api/llm/routes", {"name": "again", "targets": ["custom:gpt-4o-mini"]}, format="json"
    )
    (message,) = refused.json()["targets"]
    assert message == (
        "Target 1: custom:gpt-4o-mini is a model of the workspace's own endpoint, which only the “Enterprise custom "
        "endpoint” mode uses (the LLM settings are on “Bring your own key” now): switch to that mode, or use a model "
        "this mode reaches."
    )
    (mark,) = manage_client.get("/api/llm/routes").json()[0]["targets"]
    assert mark["problem"] == message.removeprefix("Target 1: ")
    prefs = _post(manage_client, {"model": "custom:gpt-4o-mini"})
    assert prefs.json()["model"] == [mark["problem"]]


def test_saved_provider_keys_are_shown_whatever_the_saved_mode(manage_client):
    assert manage_client.get(URL).json()["saved_keys"] == {}
    assert (
        _post(manage_client, {"mode": "byok", "model": "openai:gpt-5-mini", "api_key": SECRET}).status_code
        == 200
    )
    custom = {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}
    assert (
        _post(manage_client, {"mode": "custom", "model": "llama3:8b", "custom_endpoint": custom}).status_code
        == 200
    )
    body = manage_client.get(URL).json()
    assert body["mode"] == "custom"
    assert body["saved_keys"] == {"openai": SECRET[:3] + "…" + SECRET[-4:]}
    assert SECRET not in str(body)
