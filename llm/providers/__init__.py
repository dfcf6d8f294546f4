"""Provider adapters, one module per wire protocol; `get_adapter(protocol)` is the registry."""

from __future__ import annotations

import importlib
from types import ModuleType

from llm.providers.base import ProviderError, Target, Timeouts, aclose_clients, http_client

PROTOCOLS = ("openai_compat", "anthropic", "gemini", "azure_openai", "bedrock", "cohere")
_loaded: dict[str, ModuleType] = {}


def get_adapter(protocol: str) -> ModuleType:
    """The module implementing `chat`, `stream_chat`, `embeddings` and `list_models` for a protocol."""
    adapter = _loaded.get(protocol)
    if adapter is None:
        if protocol not in PROTOCOLS:
            raise KeyError(protocol)
        adapter = importlib.import_module(f"{__name__}.{protocol}")
        _loaded[protocol] = adapter
    return adapter


__all__ = ["PROTOCOLS", "ProviderError", "Target", "Timeouts", "aclose_clients", "get_adapter", "http_client"]
