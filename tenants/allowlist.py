"""Allow-lists of models an API key or an agent may call: parsed once (API, forms), matched on the hot path.

An entry is an exact model id as the gateway knows it (`openai:gpt-5-mini`, `openrouter:vendor/model`,
`custom:llama3`), a provider pattern (`openai:*`), a route (`route:support`, or `route:*` for every route) or
`default` (whatever the key's agent or the workspace resolves `default` to). An empty list allows everything.

A route is checked by its name alone: a key allowed `route:support` may call that route whatever its targets, and a
key allowed only `openai:*` may not call a route. `default` is checked by the model it resolves to (unless the list
names `default` itself); its fallbacks outside the list are left out of the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_ENTRIES = 50
_ENTRY = re.compile(r"^(default|[a-z0-9][a-z0-9_.-]{0,39}:(\*|[^\s,*]{1,200}))$")
ALLOW_LIST_HELP = (
    "Optional; one per line or comma-separated: model ids (openai:gpt-5-mini), a provider's models (openai:*), "
    "routes (route:support, or route:* for all) or default. Empty = every model."
)


def parse_allow_list(value: object) -> list[str]:
    """The entries of a list or of comma/newline-separated text, de-duplicated in order; ValueError with a
    message naming the first bad entry."""
    if value is None:
        return []
    if isinstance(value, str):
        items: Iterable[object] = re.split(r"[,\n\r]+", value)
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError("Give a list of model ids, routes or provider patterns.")
    entries: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("Each entry must be text, e.g. openai:gpt-5-mini, openai:* or route:support.")
        entry = item.strip()
        if not entry:
            continue
        if not _ENTRY.match(entry):
            raise ValueError(
                f"“{entry[:80]}” is not a model id, provider pattern or route: write openai:gpt-5-mini, "
                "openai:* or route:support (or default)."
            )
        if entry not in entries:
            entries.append(entry)
    if len(entries) > MAX_ENTRIES:
        raise ValueError(f"At most {MAX_ENTRIES} entries.")
    return entries


def allows(patterns: tuple[str, ...] | list[str], model_id: str) -> bool:
    """Whether a list lets a call reach `model_id` (an empty list allows everything)."""
    if not patterns:
        return True
    return any(p == model_id or (p.endswith(":*") and model_id.startswith(p[:-1])) for p in patterns)


def describe(patterns: tuple[str, ...] | list[str]) -> str:
    return ", ".join(patterns)
