"""Validators shared by services, REST serializers and forms (one rule, one message)."""

from __future__ import annotations

from typing import Any

# Amounts of TCU (caps, budgets, key spend limits) stay below 2**53: exact in JSON numbers and JavaScript, and far
# inside the database's bigint (values at or above 2**63 used to overflow it).
MAX_TCU = 2**53 - 1
TCU_RANGE_MESSAGE = f"Enter a whole number of TCU from 0 to {MAX_TCU:,}."


def parse_tcu(value: Any) -> int:
    """A TCU amount from JSON or a form (int, or a string of ASCII digits); ValueError with the message otherwise."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            raise ValueError(TCU_RANGE_MESSAGE)
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TCU:
        raise ValueError(TCU_RANGE_MESSAGE)
    return value
