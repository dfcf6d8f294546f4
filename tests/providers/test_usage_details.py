"""Cache reads, cache writes and reasoning: each protocol's usage mapped into OpenAI's shape, bounded when metered,
and priced at the cache prices (the input price when the catalog has none)."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import REGISTRY

from llm.calls.call import usage_from
from llm.metering import metrics
from llm.metering.pricing import Usage, cost_of
from llm.providers import anthropic, bedrock, gemini, openai_compat


def _split(block: dict) -> tuple[int, int, int, int, int]:
    return (
        block["prompt_tokens"],
        block["completion_tokens"],
        block["prompt_tokens_details"]["cached_tokens"],
        block["prompt_tokens_details"].get("cache_write_tokens", 0),
        block["completion_tokens_details"]["reasoning_tokens"],
    )


def test_each_protocol_counts_the_whole_prompt_and_completion():
    assert _split(
        anthropic._usage(
            {
                "input_tokens": 30,
                "cache_read_input_tokens": 60,
                "cache_creation_input_tokens": 10,
                "output_tokens": 7,
            }
        )
    ) == (100, 7, 60, 10, 0)
    assert _split(
        bedrock._usage(
            {"inputTokens": 30, "cacheReadInputTokens": 60, "cacheWriteInputTokens": 10, "outputTokens": 7}
        )
    ) == (100, 7, 60, 10, 0)
    assert _split(
        gemini._usage(
            {
                "promptTokenCount": 100,
                "cachedContentTokenCount": 60,
                "candidatesTokenCount": 5,
                "thoughtsTokenCount": 2,
            }
        )
    ) == (100, 7, 60, 0, 2)
    assert _split(
        openai_compat._usage(
            {
                "prompt_tokens": 100,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10},
                "completion_tokens_details": {"reasoning_tokens": 2},
            }
        )
    ) == (100, 7, 60, 10, 2)
    deepseek = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_cache_hit_tokens": 60}
    assert _split(openai_compat._usage(deepseek)) == (100, 7, 60, 0, 0)


def test_odd_details_are_bounded_by_what_they_are_parts_of():
    usage = Usage(request_id="r", tenant_id=1)
    block = {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 50},
        "completion_tokens_details": {"reasoning_tokens": 99},
    }
    usage_from(usage, block)
    assert (usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (80, 20, 10)
    assert block["prompt_tokens_details"] == {
        "cached_tokens": 80,
        "cache_write_tokens": 20,
    }  # what was metered
    assert block["completion_tokens_details"] == {"reasoning_tokens": 10}
    odd = Usage(request_id="r2", tenant_id=1)
    usage_from(
        odd,
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": "lots", "cache_write_tokens": -5},
            "completion_tokens_details": [1],
        },
    )
    assert (odd.cached_tokens, odd.cache_write_tokens, odd.reasoning_tokens) == (0, 0, 0)
    assert openai_compat._usage({"prompt_tokens": 1, "prompt_tokens_details": {"cache_write_tokens": "x"}})[
        "prompt_tokens_details"
    ] == {"cached_tokens": 0}


def test_cache_tokens_cost_their_price_or_the_input_price():
    # Claude Sonnet 4.5: 30k fresh × $3 + 60k read × $0.30 + 10k written × $3.75; 7k out × $15
    assert cost_of(
        100_000,
        7_000,
        Decimal(3),
        Decimal(15),
        cache_read_tokens=60_000,
        cache_write_tokens=10_000,
        cache_read_price=Decimal("0.30"),
        cache_write_price=Decimal("3.75"),
    ) == (Decimal("0.1455"), Decimal("0.105"))
    # no cache prices: every input token at the input price
    assert cost_of(
        100_000, 7_000, Decimal(3), Decimal(15), cache_read_tokens=60_000, cache_write_tokens=10_000
    ) == (Decimal("0.3"), Decimal("0.105"))
    usage = Usage(request_id="r", tenant_id=1, mode="platform", input_tokens=100_000, cached_tokens=100_000)
    usage.price(Decimal(3), Decimal(15), Decimal("0.1"), cache_read_price=Decimal("0.30"))
    assert (Decimal(usage.cost_usd), usage.tcu, Decimal(usage.billed_usd)) == (
        Decimal("0.03"),
        3000,
        Decimal("0.033"),
    )


def test_metrics_count_the_parts_apart():
    def sample(part: str) -> float:
        value = REGISTRY.get_sample_value(
            "byok_token_parts_total", {"tenant": "987654", "mode": "byok", "part": part}
        )
        return value or 0.0

    before = {part: sample(part) for part in ("cache_read", "cache_write", "reasoning")}
    usage = Usage(
        request_id="m",
        tenant_id=987654,
        mode="byok",
        input_tokens=100,
        output_tokens=10,
        cached_tokens=60,
        cache_write_tokens=10,
        reasoning_tokens=4,
    )
    metrics.observe(usage)
    assert {part: sample(part) - before[part] for part in before} == {
        "cache_read": 60,
        "cache_write": 10,
        "reasoning": 4,
    }
