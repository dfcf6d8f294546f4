"""Provider adapters, one module per wire protocol; `get_adapter(protocol)` is the registry."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

from llm.providers.base import Adapter, ProviderError, Target, Timeouts, aclose_clients, http_client

PROTOCOLS = ("openai_compat", "anthropic", "gemini", "azure_openai", "bedrock", "cohere")
_loaded: dict[str, Adapter] = {}

if TYPE_CHECKING:
    # Each protocol module is checked against the Adapter protocol here (modules are loaded lazily at run time).
    from llm.providers import anthropic, azure_openai, bedrock, cohere, gemini, openai_compat

    _openai_compat: Adapter = openai_compat
    _anthropic: Adapter = anthropic
    _gemini: Adapter = gemini
    _azure_openai: Adapter = azure_openai
    _bedrock: Adapter = bedrock
    _cohere: Adapter = cohere


def get_adapter(protocol: str) -> Adapter:
    """The module implementing `chat`, `stream_chat`, `embeddings` and `list_models` for a protocol."""
    adapter = _loaded.get(protocol)
    if adapter is None:
        if protocol not in PROTOCOLS:
            raise KeyError(protocol)
        adapter = cast("Adapter", importlib.import_module(f"{__name__}.{protocol}"))
        _loaded[protocol] = adapter
    return adapter


__all__ = [
    "PROTOCOLS",
    "Adapter",
    "ProviderError",
    "Target",
    "Timeouts",
    "aclose_clients",
    "get_adapter",
    "http_client",
]
