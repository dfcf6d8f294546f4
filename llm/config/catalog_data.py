"""The approved catalog: providers and models with list prices (USD per 1M tokens, input / output).

Prices are the approved list; context lengths, output limits and capabilities follow the providers'
published model cards. `seed_catalog` (and the data migration) load this; admins edit it in Django admin.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

PLATFORM_DEFAULT_MODEL = "anthropic:claude-sonnet-4.5"
OPENROUTER = "openrouter"  # the provider that reaches every other one

# id, name, protocol, default base URL (with /v1 where the provider's has it), docs, EU region available
PROVIDERS: list[dict[str, Any]] = [
    {"id": "anthropic", "name": "Anthropic", "protocol": "anthropic", "default_base_url": "https://api.anthropic.com",
     "docs_url": "https://docs.anthropic.com/en/docs/about-claude/models", "eu_region_available": False},
    {"id": "openai", "name": "OpenAI", "protocol": "openai_compat", "default_base_url": "https://api.openai.com/v1",
     "docs_url": "https://platform.openai.com/docs/models", "eu_region_available": False},
    {"id": "google", "name": "Google Gemini", "protocol": "gemini",
     "default_base_url": "https://generativelanguage.googleapis.com/v1beta",
     "docs_url": "https://ai.google.dev/gemini-api/docs/models", "eu_region_available": False},
    {"id": "mistral", "name": "Mistral AI", "protocol": "openai_compat", "default_base_url": "https://api.mistral.ai/v1",
     "docs_url": "https://docs.mistral.ai/getting-started/models/", "eu_region_available": True},
    {"id": "meta", "name": "Meta Llama", "protocol": "openai_compat",
     "default_base_url": "https://api.llama.com/compat/v1", "docs_url": "https://llama.developer.meta.com/docs/models",
     "eu_region_available": False},
    {"id": "deepseek", "name": "DeepSeek", "protocol": "openai_compat", "default_base_url": "https://api.deepseek.com/v1",
     "docs_url": "https://api-docs.deepseek.com/quick_start/pricing", "eu_region_available": False},
    {"id": "qwen", "name": "Qwen (Alibaba Cloud)", "protocol": "openai_compat",
     "default_base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
     "docs_url": "https://www.alibabacloud.com/help/en/model-studio/models", "eu_region_available": False},
    {"id": "xai", "name": "xAI", "protocol": "openai_compat", "default_base_url": "https://api.x.ai/v1",
     "docs_url": "https://docs.x.ai/docs/models", "eu_region_available": False},
    {"id": "cohere", "name": "Cohere", "protocol": "cohere", "default_base_url": "https://api.cohere.com",
     "docs_url": "https://docs.cohere.com/docs/models", "eu_region_available": True},
    {"id": "minimax", "name": "MiniMax", "protocol": "openai_compat", "default_base_url": "https://api.minimax.io/v1",
     "docs_url": "https://platform.minimax.io/docs/guides/models-intro", "eu_region_available": False},
    {"id": "openrouter", "name": "OpenRouter", "protocol": "openai_compat",
     "default_base_url": "https://openrouter.ai/api/v1", "docs_url": "https://openrouter.ai/models",
     "eu_region_available": False},
    {"id": "custom", "name": "Custom endpoint", "protocol": "openai_compat", "default_base_url": "",
     "docs_url": "", "eu_region_available": True},
]
for _order, _provider in enumerate(PROVIDERS):
    _provider["sort_order"] = (_order + 1) * 10


def _m(id: str, name: str, native: str, openrouter: str, price_in: str | None, price_out: str | None,
       context: int | None, max_out: int | None, caps: str, tier: str, *, eu: bool = False,
       recommended: bool = False, notes: str = "") -> dict[str, Any]:
    capabilities = set(caps.split())
    return {
        "id": id, "provider_id": id.split(":", 1)[0], "name": name, "native_model_id": native,
        "openrouter_model_id": openrouter,
        "input_usd_per_mtok": Decimal(price_in) if price_in is not None else None,
        "output_usd_per_mtok": Decimal(price_out) if price_out is not None else None,
        "context_length": context, "max_output_tokens": max_out,
        "reasoning": "reasoning" in capabilities, "vision": "vision" in capabilities,
        "tools": "tools" in capabilities, "coding": "coding" in capabilities,
        "embeddings": "embeddings" in capabilities,
        "eu_hosted": eu, "recommended": recommended, "tier": tier, "enabled": True, "notes": notes,
    }


MODELS: list[dict[str, Any]] = [
    _m("anthropic:claude-sonnet-4.5", "Claude Sonnet 4.5", "claude-sonnet-4-5", "anthropic/claude-sonnet-4.5",
       "3", "15", 200_000, 64_000, "reasoning vision tools coding", "flagship", recommended=True,
       notes="The platform default."),
    _m("anthropic:claude-haiku-4.5", "Claude Haiku 4.5", "claude-haiku-4-5", "anthropic/claude-haiku-4.5",
       "1", "5", 200_000, 64_000, "reasoning vision tools coding", "fast", recommended=True),
    _m("openai:gpt-5", "GPT-5", "gpt-5", "openai/gpt-5", "1.25", "10", 400_000, 128_000,
       "reasoning vision tools coding", "flagship", recommended=True),
    _m("openai:gpt-5-mini", "GPT-5 Mini", "gpt-5-mini", "openai/gpt-5-mini", "0.25", "2", 400_000, 128_000,
       "reasoning vision tools coding", "fast", recommended=True),
    _m("openai:gpt-5-codex", "GPT-5 Codex", "gpt-5-codex", "openai/gpt-5-codex", "1.25", "10", 400_000, 128_000,
       "reasoning vision tools coding", "flagship"),
    _m("mistral:mistral-large", "Mistral Large", "mistral-large-latest", "mistralai/mistral-large", "2", "6",
       131_072, 32_768, "tools coding", "flagship", eu=True, recommended=True),
    _m("mistral:mistral-medium-3.1", "Mistral Medium 3.1", "mistral-medium-2508", "mistralai/mistral-medium-3.1",
       "0.4", "2", 131_072, 32_768, "vision tools coding", "balanced", eu=True, recommended=True),
    _m("meta:llama-4-scout", "Llama 4 Scout 17B", "Llama-4-Scout-17B-16E-Instruct-FP8", "meta-llama/llama-4-scout",
       "0.08", "0.30", 327_680, 16_384, "vision tools", "budget"),
    _m("google:gemini-2.5-flash", "Gemini 2.5 Flash", "gemini-2.5-flash", "google/gemini-2.5-flash", "0.30", "2.50",
       1_048_576, 65_536, "reasoning vision tools coding", "fast", recommended=True),
    _m("google:gemini-2.5-flash-lite", "Gemini 2.5 Flash Lite", "gemini-2.5-flash-lite",
       "google/gemini-2.5-flash-lite", "0.10", "0.40", 1_048_576, 65_536, "reasoning vision tools", "budget"),
    _m("deepseek:deepseek-v3.1", "DeepSeek V3.1", "", "deepseek/deepseek-chat-v3.1", "0.20", "0.80", 163_840,
       8_192, "reasoning tools coding", "budget",
       notes="DeepSeek's own API now serves the Terminus update; V3.1 itself is reached through OpenRouter."),
    _m("deepseek:deepseek-v3.1-terminus", "DeepSeek V3.1 Terminus", "deepseek-chat", "deepseek/deepseek-v3.1-terminus",
       "0.27", "1.00", 128_000, 8_192, "reasoning tools coding", "budget"),
    _m("qwen:qwen3-max", "Qwen3 Max", "qwen3-max", "qwen/qwen3-max", "1.20", "6", 262_144, 65_536,
       "tools coding", "flagship"),
    _m("qwen:qwen3-coder-plus", "Qwen3 Coder Plus", "qwen3-coder-plus", "qwen/qwen3-coder-plus", "1", "5",
       1_000_000, 65_536, "tools coding", "balanced"),
    _m("xai:grok-4-fast", "Grok 4 Fast", "grok-4-fast-reasoning", "x-ai/grok-4-fast", "0.20", "0.50", 2_000_000,
       30_000, "reasoning vision tools", "fast"),
    _m("xai:grok-code-fast-1", "Grok Code Fast 1", "grok-code-fast-1", "x-ai/grok-code-fast-1", "0.20", "1.50",
       256_000, 10_000, "reasoning tools coding", "fast"),
    _m("cohere:command-a", "Command A", "command-a-03-2025", "cohere/command-a", "2.50", "10", 256_000, 8_000,
       "tools", "flagship", eu=True, notes="EU-deployable (Cohere private deployments in the EU)."),
    _m("minimax:minimax-m2.5", "MiniMax M2.5", "MiniMax-M2.5", "minimax/minimax-m2.5", "0.30", "1.20", 204_800,
       131_072, "reasoning tools coding", "balanced"),
    # Embedding models, one per provider that has one (output price 0: embeddings bill input only).
    _m("openai:text-embedding-3-small", "text-embedding-3-small", "text-embedding-3-small",
       "openai/text-embedding-3-small", "0.02", "0", 8_191, None, "embeddings", "budget"),
    _m("google:gemini-embedding-001", "Gemini Embedding", "gemini-embedding-001", "google/gemini-embedding-001",
       "0.15", "0", 2_048, None, "embeddings", "balanced"),
    _m("cohere:embed-v4.0", "Cohere Embed v4", "embed-v4.0", "", "0.12", "0", 128_000, None, "embeddings",
       "balanced", eu=True),
    _m("mistral:mistral-embed", "Mistral Embed", "mistral-embed", "mistralai/mistral-embed-2312", "0.10", "0", 8_192,
       None, "embeddings", "budget", eu=True),
    # The placeholder for a tenant's enterprise endpoint: prices come from the endpoint's own settings.
    _m("custom:enterprise", "Custom enterprise endpoint", "", "", None, None, None, None, "tools", "balanced",
       notes="Placeholder: custom mode sends any model name to the tenant's own endpoint."),
]
for _order, _model in enumerate(MODELS):
    _model["sort_order"] = (_order + 1) * 10
