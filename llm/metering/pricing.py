"""Pricing of one call: tokens to list cost (or the cost the provider reported, for targets priced that way), TCU
and billed amount, and the Usage record (bounded, so the database never refuses it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import orjson
from django.conf import settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from llm.jsontypes import JSON, JSONObject

_MTOK = Decimal(1_000_000)


def tcu_of(cost_usd: Decimal) -> int:
    tcu_usd = Decimal(str(settings.TCU_USD))
    return int((cost_usd / tcu_usd).to_integral_value(rounding="ROUND_CEILING")) if cost_usd > 0 else 0


def estimate_tokens(text_len: int) -> int:
    """Rough token count from characters (≈4 characters a token), for reservations and cut streams."""
    return max(1, (text_len + 3) // 4)


def prompt_chars(body: dict) -> int:
    """Characters a request sends (messages, embeddings' input), counting anything odd generously."""
    total = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                if (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                ):
                    total += len(part["text"])
                else:
                    total += 1000  # an image or other part: count it generously
        if isinstance(message, dict) and message.get("tool_calls"):
            total += len(orjson.dumps(message["tool_calls"]))
    if body.get("tools"):
        total += len(orjson.dumps(body["tools"]))
    inp = body.get("input")
    if isinstance(inp, str):
        total += len(inp)
    elif isinstance(inp, list):
        for item in inp:
            total += len(item) if isinstance(item, str) else 4 * len(item) if isinstance(item, list) else 4
    return total


_CENT_MILLIONTH = Decimal("0.00000001")
# A reported cost above this is not believed (no single call costs a thousand dollars): the tokens are metered at
# the conservative prices instead, and the event is flagged.
REPORTED_COST_MAX = Decimal(1000)


# Anthropic's list price of a prompt-cache write kept an hour (`cache_control: {"ttl": "1h"}`): twice the input
# price (5 minutes: 1.25 times, the catalog's cache-write price). Anthropic and Bedrock report writes by duration.
CACHE_WRITE_1H_INPUT_MULTIPLE = Decimal(2)


def cost_of(
    input_tokens: int,
    output_tokens: int,
    in_price: Decimal | None,
    out_price: Decimal | None,
    *,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    cache_read_price: Decimal | None = None,
    cache_write_price: Decimal | None = None,
) -> tuple[Decimal, Decimal]:
    """Input and output cost in USD. `input_tokens` counts the whole prompt: the part read from the provider's
    prompt cache is priced at the cache-read price, the part written to it at the cache-write price (either, when
    the catalog has none, at the input price), the rest at the input price. The catalog's write price is the
    5-minute cache's; the writes kept an hour (a part of `cache_write_tokens`) cost CACHE_WRITE_1H_INPUT_MULTIPLE
    times the input price. Reasoning is part of the output."""
    fresh = max(input_tokens - cache_read_tokens - cache_write_tokens, 0)
    hour = min(cache_write_1h_tokens, cache_write_tokens)
    in_price = in_price or Decimal(0)
    read_price = in_price if cache_read_price is None else cache_read_price
    write_price = in_price if cache_write_price is None else cache_write_price
    input_cost = (
        fresh * in_price
        + cache_read_tokens * read_price
        + (cache_write_tokens - hour) * write_price
        + hour * in_price * CACHE_WRITE_1H_INPUT_MULTIPLE
    )
    return (
        (Decimal(input_cost) / _MTOK).quantize(_CENT_MILLIONTH),
        (Decimal(output_tokens) * (out_price or 0) / _MTOK).quantize(_CENT_MILLIONTH),
    )


def reported_cost(value: object) -> str | None:
    """A cost as a provider reported it (USD, a JSON number), or None when it is missing or not believable."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        cost = Decimal(str(value))
    except ArithmeticError:
        return None
    if not cost.is_finite() or cost < 0 or cost > REPORTED_COST_MAX:
        return None
    return str(cost.quantize(_CENT_MILLIONTH))


def _split(total: Decimal, by_input: Decimal, by_output: Decimal) -> tuple[Decimal, Decimal]:
    """A reported total split into input and output cost in the proportion the prices give them."""
    listed = by_input + by_output
    cost_input = (total * by_input / listed).quantize(_CENT_MILLIONTH) if listed > 0 else total
    return cost_input, total - cost_input


@dataclass(slots=True)
class Usage:
    """What one call used and how it went; serialised onto the durable queue as JSON."""

    request_id: str
    tenant_id: int
    request_type: str = "chat"
    api_key_id: int | None = None
    agent_id: int | None = None
    user_id: int | None = None
    mode: str = ""
    provider: str = ""
    model: str = ""
    tier: str = ""
    route: str = ""
    variant: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    # Parts of input_tokens: read from the provider's prompt cache (cached_tokens) and written to it; and the part
    # of output_tokens the model spent reasoning (billed as output, recorded apart).
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    # The part of the writes kept an hour (Anthropic): priced apart, recorded in cache_write_tokens.
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    tokens_estimated: bool = False
    cost_input_usd: str = "0"
    cost_output_usd: str = "0"
    cost_usd: str = "0"
    billed_usd: str = "0"
    # The cost is the conservative price's, not a known one: the provider was to report the cost and did not.
    cost_estimated: bool = False
    # What the provider reported the call cost (USD), when it does (not stored: `price` makes it the cost).
    reported_cost_usd: str | None = None
    tcu: int = 0
    latency_ms: int = 0
    ttft_ms: int | None = None
    fallback_depth: int = 0
    cached: bool = False
    status: str = "ok"
    error_kind: str = ""
    http_status: int = 200
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def price(
        self,
        in_price: Decimal | None,
        out_price: Decimal | None,
        markup: Decimal | None,
        *,
        cost_reported: bool = False,
        cache_read_price: Decimal | None = None,
        cache_write_price: Decimal | None = None,
    ) -> None:
        """Fill cost, TCU and billed amount from the prices (zero for cached answers). A target priced by the cost
        its provider reports (`cost_reported`) costs what the answer said; without a report it is metered at its
        prices (the conservative ones) and flagged `cost_estimated`, never at $0."""
        if self.cached:
            return
        ci, co = cost_of(
            self.input_tokens,
            self.output_tokens,
            in_price,
            out_price,
            cache_read_tokens=self.cached_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            cache_read_price=cache_read_price,
            cache_write_price=cache_write_price,
        )
        if cost_reported and self.reported_cost_usd is not None:
            ci, co = _split(Decimal(self.reported_cost_usd), ci, co)
        elif cost_reported:
            self.cost_estimated = True
            if self.status == "ok":  # a cut or abandoned stream has no report to expect
                log.warning(
                    "%s: %s reported no cost for %s; metered at the conservative price",
                    self.request_id,
                    self.provider,
                    self.model,
                )
        cost = ci + co
        self.cost_input_usd, self.cost_output_usd, self.cost_usd = str(ci), str(co), str(cost)
        self.tcu = tcu_of(cost)
        if self.mode == "platform":
            self.billed_usd = str((cost * (1 + (markup or 0))).quantize(Decimal("0.00000001")))

    def to_json(self) -> bytes:
        """The event as queued: every field checked and bounded, so the database never refuses it."""
        # A shallow read of the fields: every one is a scalar, and `asdict` deep-copies each (a third of a call's
        # metering time).
        return orjson.dumps(clean_event({name: getattr(self, name) for name in _USAGE_FIELDS}))


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))

# Bounds of the UsageEvent columns: strings are cut, numbers clamped, unknown fields dropped.
_STR_FIELDS = {
    "request_id": 64,
    "request_type": 16,
    "mode": 16,
    "provider": 64,
    "model": 200,
    "tier": 16,
    "route": 100,
    "variant": 200,
    "status": 16,
    "error_kind": 32,
}


_INT_FIELDS = {
    "input_tokens": 2**31 - 1,
    "output_tokens": 2**31 - 1,
    "cached_tokens": 2**31 - 1,
    "cache_write_tokens": 2**31 - 1,
    "reasoning_tokens": 2**31 - 1,
    "tcu": 2**63 - 1,
    "latency_ms": 2**31 - 1,
    "ttft_ms": 2**31 - 1,
    "fallback_depth": 2**15 - 1,
    "http_status": 999,
}


_REF_FIELDS = ("tenant_id", "api_key_id", "agent_id", "user_id")


_MONEY_FIELDS = ("cost_input_usd", "cost_output_usd", "cost_usd", "billed_usd")


_MONEY_MAX = Decimal("99999999.99999999")  # DecimalField(max_digits=16, decimal_places=8)


_BOOL_FIELDS = ("tokens_estimated", "cached", "cost_estimated")


def _bounded_int(value: JSON, top: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(number, 0), top)


def _bounded_money(value: object) -> str:
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        return "0"
    if not amount.is_finite() or amount < 0:
        return "0"
    return str(min(amount, _MONEY_MAX).quantize(Decimal("0.00000001")))


def clean_event(data: Mapping[str, JSON]) -> JSONObject:
    """One event's fields made safe for the database: nothing a tenant sends or a provider answers can make
    the insert fail (and hold the queue back)."""
    out: JSONObject = {}
    for name, size in _STR_FIELDS.items():
        value = data.get(name)
        text = value if isinstance(value, str) else "" if value is None else str(value)
        out[name] = text.replace("\x00", "")[:size]  # PostgreSQL text cannot hold NUL
    for name, top in _INT_FIELDS.items():
        if name == "ttft_ms" and data.get(name) is None:
            out[name] = None
        else:
            out[name] = _bounded_int(data.get(name), top)
    for name in _REF_FIELDS:
        value = data.get(name)
        out[name] = (
            value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63 else None
        )
    for name in _MONEY_FIELDS:
        out[name] = _bounded_money(data.get(name, "0"))
    for name in _BOOL_FIELDS:
        out[name] = bool(data.get(name))
    created = data.get("created_at")
    out["created_at"] = (
        created if isinstance(created, str) and len(created) <= 40 else datetime.now(UTC).isoformat()
    )
    return out
