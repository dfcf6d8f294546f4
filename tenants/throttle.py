"""Throttling of log-in, sign-up, password reset and invitation acceptance, on django-axes' counters.

Log-in failures are counted by axes itself (its authentication backend), per account and per client address. The
other account pages count their attempts through the same handler under their own account scope (`signup:…`,
`reset:…`, `invite:…`), so one address trying too much anywhere is slowed down everywhere, and one e-mail address
cannot be flooded with reset mails. A locked-out client gets a page (429, Retry-After) saying when to retry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render

View = Callable[..., HttpResponseBase]


class ThrottleBackend(AxesStandaloneBackend):
    """Axes' check in front of ModelBackend. Without a request (Django's test client `login()`, scripts) there is no
    client to count, so there is nothing to throttle: axes itself would refuse such calls outright."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def throttle_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The account a log-in attempt is counted against: the e-mail, trimmed and lower-cased (so `A@x` and `a@x`
    share one counter). Used by axes as AXES_USERNAME_CALLABLE."""
    if credentials:
        value = credentials.get(settings.AXES_USERNAME_FORM_FIELD)
    else:
        value = getattr(request, "POST", {}).get(settings.AXES_USERNAME_FORM_FIELD)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()[:254]


def lockout_parameters(request: HttpRequest, credentials: dict[str, Any] | None) -> list[str]:
    """Count by client address always, and by account when there is one (AXES_LOCKOUT_PARAMETERS); without this, every
    attempt that names no account would share a single account counter."""
    return ["ip_address", "username"] if throttle_username(request, credentials) else ["ip_address"]


def retry_minutes(request: HttpRequest) -> int:
    cool_off = get_cool_off(request)
    return max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else 1


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """What a throttled client sees (AXES_LOCKOUT_CALLABLE): when to retry, as a page and as Retry-After."""
    minutes = retry_minutes(request)
    response = render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response


def throttled(scope: str, *, field: str | None = None) -> Callable[[View], View]:
    """Count a page's attempts with axes: a POST, or any answer of 400 or more (a bad invitation token), counts
    against the client address and, with `field`, against `scope:<that form value>`. Refused once over the limit."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            account = request.POST.get(field, "") if field and request.method == "POST" else ""
            credentials = {settings.AXES_USERNAME_FORM_FIELD: f"{scope}:{account}" if account else None}
            if not AxesProxyHandler.is_allowed(request, credentials):
                return lockout_response(request, None, credentials)
            response = view(request, *args, **kwargs)
            if request.method == "POST" or response.status_code >= 400:
                AxesProxyHandler.user_login_failed(sender=wrapper, credentials=credentials, request=request)
                request.axes_locked_out = False  # type: ignore[attr-defined]  # this attempt stands; the next waits
            return response

        return wrapper

    return decorate
