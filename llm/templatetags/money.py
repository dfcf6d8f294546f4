"""`usd`: money as people read it — cents for real amounts, enough digits for the fractions of a cent one call costs."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

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
