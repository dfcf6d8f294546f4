"""Exact token accounting, a golden matrix through the gateway: each provider's fake answers with cache reads,
cache writes and reasoning in its own wire format, streamed and not; the UsageEvent keeps them apart and costs,
to the cent, what the catalog's prices say (cache reads at the cache-read price, writes at the cache-write price,
reasoning as output), exactly the same streamed as not; through chat completions, Anthropic's Messages API and
OpenAI's Responses API alike."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import anthropic
import openai
import pytest
from django.conf import settings

from tests.fakes.upstream import UsageDetails
from tests.gateway.conftest import drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT, COMPLETION = 100_000, 20_000
READ, WRITE, REASONING = 60_000, 10_000, 8_000


@dataclass(frozen=True)
class Case:
    provider: str
    cache_read: int
    cache_write: int
    reasoning: int
    # (input cost, output cost) in USD, worked out by hand from the list prices
    cost: tuple[str, str]
    cache_write_1h: int = 0  # of cache_write, kept an hour
    # a custom endpoint's own (cache-read, cache-write) prices in USD per 1M tokens; None: the input price
    endpoint_cache_prices: tuple[str | None, str | None] | None = None


# OpenAI GPT-5: $1.25 in, $10 out, cached input $0.125, no write price (a reported write costs the input price).
# Anthropic Claude Sonnet 4.5: $3 in, $15 out, cache read $0.30, 5-minute cache write $3.75, 1-hour cache write
# $6 (twice the input price); no reasoning count.
# Gemini 2.5 Flash: $0.30 in, $2.50 out, cached $0.03; thinking billed as output; no per-call cache write.
# Bedrock (a tenant's own endpoint at $3 in / $15 out, no cache prices): reads and writes at the input price;
# given its own cache prices ($0.30 read, $3.75 write, as Bedrock lists Claude Sonnet 4.5), at those, and an
# empty one at the input price.
CASES = [
    Case("openai", 0, 0, 0, ("0.125", "0.2")),
    Case("openai", READ, 0, 0, ("0.0575", "0.2")),  # 40k × 1.25 + 60k × 0.125
    Case("openai", 0, WRITE, 0, ("0.125", "0.2")),
    Case("openai", 0, 0, REASONING, ("0.125", "0.2")),
    Case("openai", READ, 0, REASONING, ("0.0575", "0.2")),
    Case("anthropic", 0, 0, 0, ("0.3", "0.3")),
    Case("anthropic", READ, 0, 0, ("0.138", "0.3")),  # 40k × 3 + 60k × 0.30
    Case("anthropic", 0, WRITE, 0, ("0.3075", "0.3")),  # 90k × 3 + 10k × 3.75
    Case("anthropic", READ, WRITE, 0, ("0.1455", "0.3")),  # 30k × 3 + 60k × 0.30 + 10k × 3.75
    Case("anthropic", 0, WRITE, 0, ("0.3165", "0.3"), cache_write_1h=4_000),  # 90k × 3 + 6k × 3.75 + 4k × 6
    Case("gemini", 0, 0, 0, ("0.03", "0.05")),
    Case("gemini", READ, 0, 0, ("0.0138", "0.05")),  # 40k × 0.30 + 60k × 0.03
    Case("gemini", 0, 0, REASONING, ("0.03", "0.05")),
    Case("gemini", READ, 0, REASONING, ("0.0138", "0.05")),
    Case("bedrock", 0, 0, 0, ("0.3", "0.3")),
    Case("bedrock", READ, 0, 0, ("0.3", "0.3")),
    Case("bedrock", 0, WRITE, 0, ("0.3", "0.3")),
    Case("bedrock", READ, WRITE, 0, ("0.3", "0.3")),
    Case("bedrock", 0, 0, 0, ("0.3", "0.3"), endpoint_cache_prices=("0.30", "3.75")),
    Case(
        "bedrock", READ, 0, 0, ("0.138", "0.3"), endpoint_cache_prices=("0.30", "3.75")
    ),  # 40k × 3 + 60k × 0.30
    Case(
        "bedrock", 0, WRITE, 0, ("0.3075", "0.3"), endpoint_cache_prices=("0.30", "3.75")
    ),  # 90k × 3 + 10k × 3.75
    # 30k × 3 + 60k × 0.30 + 10k × 3.75
    Case("bedrock", READ, WRITE, 0, ("0.1455", "0.3"), endpoint_cache_prices=("0.30", "3.75")),
    # 30k × 3 + 60k × 0.30 + 10k × 3 (no write price: the input price)
    Case("bedrock", READ, WRITE, 0, ("0.138", "0.3"), endpoint_cache_prices=("0.30", None)),
    # 30k × 3 + 60k × 3 + 10k × 0 (a free write is a price, not empty)
    Case("bedrock", READ, WRITE, 0, ("0.27", "0.3"), endpoint_cache_prices=(None, "0")),
    # Converse's cacheDetails: 90k × 3 + 6k × 3.75 + 4k × 6 (an hour's write: twice the input price, as Anthropic)
    Case(
        "bedrock",
        0,
        WRITE,
        0,
        ("0.3165", "0.3"),
        cache_write_1h=4_000,
        endpoint_cache_prices=("0.30", "3.75"),
    ),
]

PLATFORM = {
    # provider: (model, env prefix, base URL suffix)
    "openai": ("openai:gpt-5", "OPENAI", "/v1"),
    "anthropic": ("anthropic:claude-sonnet-4.5", "ANTHROPIC", ""),
    "gemini": ("google:gemini-2.5-flash", "GOOGLE", ""),
}

# The fake accepts SigV4 credentials whose key id starts AKIATEST (built here so no line looks like a real key).
BEDROCK_KEY_ID = "AKIA" + "TEST" + "EXAMPLE00001"


def _case_id(case: Case) -> str:
    parts = [case.provider]
    parts += ["read"] if case.cache_read else []
    parts += ["write"] if case.cache_write else []
    parts += ["1h"] if case.cache_write_1h else []
    parts += ["reasoning"] if case.reasoning else []
    if case.endpoint_cache_prices is not None:
        parts += ["priced-" + "-".join(p if p is not None else "input" for p in case.endpoint_cache_prices)]
    return "-".join(parts if len(parts) > 1 else [case.provider, "plain"])


@pytest.fixture
def enterprise(tenant):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    return tenant


def _configure(case: Case, fake, monkeypatch, manage_client) -> str:
    """Point the case's provider at the fake; returns the model to call."""
    if case.provider == "bedrock":
        read, write = case.endpoint_cache_prices or (None, None)
        saved = manage_client.post(
            "/api/llm/preferences",
            {
                "mode": "custom",
                "model": "anthropic.claude-sonnet-4-5",
                "custom_endpoint": {
                    "kind": "bedrock",
                    "base_url": fake.url,
                    "region": "eu-central-1",
                    "access_key_id": BEDROCK_KEY_ID,
                    "secret_access_key": "sk-test-" + "b" * 24,
                    "input_usd_per_mtok": 3,
                    "output_usd_per_mtok": 15,
                    **({"cache_read_usd_per_mtok": read} if read is not None else {}),
                    **({"cache_write_usd_per_mtok": write} if write is not None else {}),
                },
            },
            format="json",
        )
        assert saved.status_code in (200, 201), saved.content
        reconfigured()
        return "default"
    model, prefix, suffix = PLATFORM[case.provider]
    monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
    monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    reconfigured()
    return model


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_tokens_and_cost_streamed_and_not(
    gateway_url, fake, enterprise, make_key, manage_client, monkeypatch, case
):
    fake.usage_details = UsageDetails(
        PROMPT, COMPLETION, case.cache_read, case.cache_write, case.reasoning, case.cache_write_1h
    )
    model = _configure(case, fake, monkeypatch, manage_client)
    client = openai.OpenAI(
        base_url=gateway_url + "/v1",
        api_key=make_key(enterprise, scopes=["gateway"]),
        max_retries=0,
        timeout=20,
    )
    messages = [{"role": "user", "content": "Hi"}]
    reply = client.chat.completions.create(model=model, messages=messages)
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )

    # What the client is shown is what was metered, the same both ways, in OpenAI's shape.
    for usage in (reply.usage, chunks[-1].usage):
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT, COMPLETION)
        assert usage.prompt_tokens_details.cached_tokens == case.cache_read
        assert usage.completion_tokens_details.reasoning_tokens == case.reasoning
        # the openai SDK names it as OpenRouter does (absent when nothing was written)
        assert (getattr(usage.prompt_tokens_details, "cache_write_tokens", None) or 0) == case.cache_write

    events = drain_events()
    assert len(events) == 2
    cost_input, cost_output = (Decimal(c) for c in case.cost)
    for event in events:
        assert event.status == "ok"
        assert (event.input_tokens, event.output_tokens) == (PROMPT, COMPLETION)
        assert (event.cached_tokens, event.cache_write_tokens, event.reasoning_tokens) == (
            case.cache_read,
            case.cache_write,
            case.reasoning,
        )
        assert (event.cost_input_usd, event.cost_output_usd) == (cost_input, cost_output)
        assert event.cost_usd == cost_input + cost_output
        assert event.tcu == int((cost_input + cost_output) / Decimal(str(settings.TCU_USD)))
    plain, streamed = events
    assert (plain.cost_usd, plain.billed_usd, plain.tcu) == (
        streamed.cost_usd,
        streamed.billed_usd,
        streamed.tcu,
    )


# Through Anthropic's Messages API (`POST /v1/messages`): to an Anthropic target the request passes through and
# the answer's own usage comes back; to an OpenAI-compatible one it is translated. Either way the client sees the
# prompt split Anthropic's way and the call is metered as above.
MESSAGES = {
    # upstream: (model named by the client, env prefix, base URL suffix, metered model, (input, output) USD)
    # Claude Haiku 4.5: 30k × $1 + 60k × $0.10 + 10k × $1.25; 20k × $5
    "anthropic": ("claude-haiku-4-5", "ANTHROPIC", "", "anthropic:claude-haiku-4.5", ("0.0485", "0.1")),
    # GPT-5 mini: 30k × $0.25 + 60k × $0.025 + 10k × $0.25 (no write price); 20k × $2
    "openai_compat": ("openai:gpt-5-mini", "OPENAI", "/v1", "openai:gpt-5-mini", ("0.0115", "0.04")),
}


@pytest.mark.parametrize("upstream", list(MESSAGES))
def test_messages_api_meters_the_cache_the_same_streamed_and_not(
    gateway_url, fake, enterprise, make_key, monkeypatch, upstream
):
    model, prefix, suffix, metered, cost = MESSAGES[upstream]
    monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
    monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    reconfigured()
    reasoning = REASONING if upstream == "openai_compat" else 0
    fake.usage_details = UsageDetails(PROMPT, COMPLETION, READ, WRITE, reasoning)
    client = anthropic.Anthropic(
        base_url=gateway_url,
        api_key=make_key(enterprise, scopes=["gateway"]),
        max_retries=0,
        timeout=20,
    )
    messages = [{"role": "user", "content": "Hi"}]
    reply = client.messages.create(model=model, max_tokens=200, messages=messages)
    with client.messages.stream(model=model, max_tokens=200, messages=messages) as stream:
        streamed = stream.get_final_message()
    for usage in (reply.usage, streamed.usage):
        assert (
            usage.input_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
            usage.output_tokens,
        ) == (PROMPT - READ - WRITE, READ, WRITE, COMPLETION)

    events = drain_events()
    assert len(events) == 2
    cost_input, cost_output = (Decimal(c) for c in cost)
    for event in events:
        assert (event.model, event.status) == (metered, "ok")
        assert (event.input_tokens, event.output_tokens) == (PROMPT, COMPLETION)
        assert (event.cached_tokens, event.cache_write_tokens, event.reasoning_tokens) == (
            READ,
            WRITE,
            reasoning,
        )
        assert (event.cost_input_usd, event.cost_output_usd) == (cost_input, cost_output)
    plain, stream_event = events
    assert (plain.cost_usd, plain.billed_usd, plain.tcu) == (
        stream_event.cost_usd,
        stream_event.billed_usd,
        stream_event.tcu,
    )


def test_responses_api_shows_and_meters_cache_reads_and_reasoning_the_same_streamed_and_not(
    gateway_url, fake, enterprise, make_key, monkeypatch
):
    model, prefix, suffix = PLATFORM["openai"]
    monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test-platform")
    monkeypatch.setenv(f"{prefix}_BASE_URL", fake.url + suffix)
    reconfigured()
    fake.usage_details = UsageDetails(PROMPT, COMPLETION, READ, 0, REASONING)
    client = openai.OpenAI(
        base_url=gateway_url + "/v1",
        api_key=make_key(enterprise, scopes=["gateway"]),
        max_retries=0,
        timeout=20,
    )
    reply = client.responses.create(model=model, input="Hi")
    events = list(client.responses.create(model=model, input="Hi", stream=True))
    for usage in (reply.usage, events[-1].response.usage):
        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens) == (PROMPT, COMPLETION)
        assert usage.input_tokens_details.cached_tokens == READ
        assert usage.output_tokens_details.reasoning_tokens == REASONING
    plain, streamed = drain_events()
    for event in (plain, streamed):
        assert (event.cached_tokens, event.cache_write_tokens, event.reasoning_tokens) == (READ, 0, REASONING)
        assert (event.cost_input_usd, event.cost_output_usd) == (Decimal("0.0575"), Decimal("0.2"))
    assert (plain.cost_usd, plain.tcu) == (streamed.cost_usd, streamed.tcu)
