"""The one error type of the call path: answered in OpenAI's format, and the mapping from provider failures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from llm.providers import ProviderError


class GatewayError(Exception):
    """An error answered in OpenAI's format: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
        error_kind: str = "",
        provider: str = "",
    ):
        super().__init__(message)
        self.provider = provider  # the provider (or own endpoint's kind) that failed, for hints; "" when none
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.error_kind = error_kind or code or type

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )


def error_for(exc: ProviderError) -> GatewayError:
    """The gateway's answer once every target failed with this provider error."""
    kind = exc.kind
    if kind == "rate_limit":
        return GatewayError(
            429,
            f"{exc.message}",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            retry_after=int(exc.retry_after or 1),
            error_kind=kind,
            provider=exc.provider,
        )
    if kind == "timeout":
        return GatewayError(
            504,
            exc.message,
            type="api_error",
            code="upstream_timeout",
            error_kind=kind,
            provider=exc.provider,
        )
    if kind == "auth":
        return GatewayError(
            502, exc.message, type="api_error", code="upstream_auth", error_kind=kind, provider=exc.provider
        )
    if kind == "not_found":
        return GatewayError(
            502, exc.message, type="api_error", code="model_not_found", error_kind=kind, provider=exc.provider
        )
    if kind == "context_length":
        return GatewayError(
            400,
            exc.message,
            type="invalid_request_error",
            code="context_length_exceeded",
            error_kind=kind,
            provider=exc.provider,
        )
    if kind == "content_policy":
        return GatewayError(
            400,
            exc.message,
            type="invalid_request_error",
            code="content_policy_violation",
            error_kind=kind,
            provider=exc.provider,
        )
    if kind == "bad_request":
        return GatewayError(
            400,
            exc.message,
            type="invalid_request_error",
            code="upstream_bad_request",
            error_kind=kind,
            provider=exc.provider,
        )
    return GatewayError(
        502,
        exc.message,
        type="api_error",
        code="upstream_unavailable",
        error_kind=kind,
        provider=exc.provider,
    )
