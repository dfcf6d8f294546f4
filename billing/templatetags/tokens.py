"""`tokens`: a token count as people read it on the billing and usage pages ("5M", "1.25M", "750K")."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


def _trim(value: Decimal, places: int) -> str:
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@register.filter
def tokens(value: object) -> str:
    try:
        n = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return "—"
    if not n.is_finite():
        return "—"
    sign, n = ("-" if n < 0 else ""), abs(n)
    if n >= 999_950:  # what would round to "1000K" reads as "1M"
        return f"{sign}{_trim(n / 1_000_000, 2)}M"
    if n >= 1_000:
        return f"{sign}{_trim(n / 1_000, 1)}K"
    return f"{sign}{_trim(n, 0)}"


@register.filter
def usage_bar(row: dict) -> dict[str, float]:
    """Widths (%) of a managed agent's bar, scaled to the larger of its included and used tokens: the part used
    within the included tokens, the overage beyond them, and where the included tokens end."""
    included, used = int(row.get("included_tokens") or 0), int(row.get("used_tokens") or 0)
    over = int(row.get("overage_tokens") or 0)
    scale = max(included, used, 1)
    return {
        "within": round(100 * min(used, included) / scale, 2),
        "over": round(100 * over / scale, 2),
        "mark": round(100 * included / scale, 2),
        "pct": round(100 * used / included) if included else 0,
    }
