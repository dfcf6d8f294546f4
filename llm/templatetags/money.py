"""Numbers as people read them, the same on every page (static/js/app.js has the same two for scripts): `usd`, money
— cents for real amounts, enough digits for the fractions of a cent one call costs; `num`, a count or a measure with
thousands separators ("1,180", "1,090 ms")."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma

register = template.Library()


@register.filter
def usd(value: object) -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return "—"
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount < Decimal("0.000001"):
        return f"{sign}<$0.000001"
    if amount < Decimal("0.01"):
        return f"{sign}${amount:.6f}".rstrip("0")
    return f"{sign}${intcomma(f'{amount:.2f}')}"


@register.filter
def num(value: object, places: int = 0) -> str:
    """`1180` → "1,180"; `places` decimals (rounded half up), none by default."""
    try:
        n = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return "—"
    if not n.is_finite():
        return "—"
    rounded = n.quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)
    return intcomma(f"{rounded:.{int(places)}f}")
