"""The one way to reach Stripe: a configured client, and the wrapper that turns Stripe failures into messages."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

if TYPE_CHECKING:
    import stripe

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

GENERIC_MESSAGE = (
    "Something went wrong with our payment provider; nothing was changed. Please try again later."
)
UNAVAILABLE_MESSAGE = (
    "Our payment provider could not be reached; nothing was changed. Please try again in a minute."
)
# Tenant-facing: plain words (the operator's setting is STRIPE_API_KEY, documented in the README).
NOT_CONFIGURED_MESSAGE = (
    "Payments are not set up on this installation yet, so paid plans, managed LLM and the payment method cannot "
    "be changed here. Ask whoever runs this installation to connect Stripe."
)

_clients: dict[tuple[str, str], stripe.StripeClient] = {}


class BillingError(Exception):
    """A billing action failed; `message` is safe to show to the user."""

    def __init__(self, message: str, *, code: str = "billing_error", retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


def stripe_sdk() -> ModuleType:
    """The Stripe SDK, imported on first use: it is heavy, and a process that never bills (the gateway) never
    needs it (tests/gateway/test_lean_imports.py)."""
    import stripe  # lazy on purpose: see the docstring

    return stripe


def stripe_configured() -> bool:
    return bool(settings.STRIPE_API_KEY)


def stripe_client() -> stripe.StripeClient:
    """The Stripe client for the configured key, talking to STRIPE_API_BASE when set (the local fake in tests)."""
    stripe = stripe_sdk()
    if not stripe_configured():
        raise BillingError(NOT_CONFIGURED_MESSAGE, code="billing_not_configured")
    key = (settings.STRIPE_API_KEY, settings.STRIPE_API_BASE)
    client = _clients.get(key)
    if client is None:
        kwargs: dict[str, Any] = {
            "max_network_retries": 2,  # the SDK retries with the same idempotency key
            "http_client": stripe.new_default_http_client(timeout=20),
        }
        if settings.STRIPE_API_BASE:
            kwargs["base_addresses"] = {"api": settings.STRIPE_API_BASE.rstrip("/")}
        client = stripe.StripeClient(settings.STRIPE_API_KEY, **kwargs)
        _clients[key] = client
    return client


def reset_clients() -> None:
    _clients.clear()


@contextmanager
def stripe_errors(action: str) -> Iterator[None]:
    """Wrap Stripe calls once: card errors → the card message; unreachable → retryable; else logged + generic."""
    stripe = stripe_sdk()
    try:
        yield
    except stripe.CardError as exc:
        log.info("stripe card error during %s: %s", action, exc.code)
        raise BillingError(
            exc.user_message or "Your card was declined.", code=exc.code or "card_declined"
        ) from exc
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        log.warning("stripe unreachable during %s: %s", action, type(exc).__name__)
        raise BillingError(UNAVAILABLE_MESSAGE, code="stripe_unavailable", retryable=True) from exc
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:  # callers often expect this (does the object exist yet?)
            log.info("stripe 404 during %s", action)
        else:
            log.error("stripe invalid request during %s: %s", action, exc.code, exc_info=True)
        raise BillingError(GENERIC_MESSAGE, code="stripe_error") from exc
    except stripe.StripeError as exc:
        log.error(
            "stripe error during %s: %s %s",
            action,
            type(exc).__name__,
            getattr(exc, "code", ""),
            exc_info=True,
        )
        raise BillingError(GENERIC_MESSAGE, code="stripe_error") from exc


def catch_stripe_errors(func: F) -> F:
    """Decorator form of `stripe_errors`, named after the function it wraps."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with stripe_errors(func.__name__):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def as_dict(obj: Any) -> dict[str, Any]:
    """A Stripe object (SDK 16 objects are not dicts) as a plain, recursive dict."""
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dict(obj)


def is_missing(exc: BaseException) -> bool:
    """A 404 from Stripe (the object does not exist), behind a BillingError or not."""
    cause = exc.__cause__ if isinstance(exc, BillingError) else exc
    stripe = stripe_sdk()
    return isinstance(cause, stripe.InvalidRequestError) and getattr(cause, "http_status", None) == 404
