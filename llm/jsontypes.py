"""The names for arbitrary JSON on the call path: bodies as clients send them, answers as providers do."""

from __future__ import annotations

from typing import Any, TypeAlias

# A JSON value as orjson parsed it from a client or a provider. Its shape is never trusted: every reader checks
# what it needs (`isinstance`, `.get`, the body checks of `llm.calls.checks`), so it stays `Any` rather than a
# union that every one of those readers would have to narrow first. Where a shape is ours, a TypedDict or a
# dataclass names it instead.
JSON: TypeAlias = Any

# A JSON object: a request body, a provider's answer, a queued usage event.
JSONObject: TypeAlias = dict[str, JSON]
