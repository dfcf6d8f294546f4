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


# A provider error's kind → the gateway's answer: (status, OpenAI error type, code); any other kind is unavailable.
_ANSWERS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "rate_limit_error", "rate_limit_exceeded"),
    "timeout": (504, "api_error", "upstream_timeout"),
    "auth": (502, "api_error", "upstream_auth"),
    "not_found": (502, "api_error", "model_not_found"),
    "context_length": (400, "invalid_request_error", "context_length_exceeded"),
    "content_policy": (400, "invalid_request_error", "content_policy_violation"),
    "bad_request": (400, "invalid_request_error", "upstream_bad_request"),
}
_UNAVAILABLE = (502, "api_error", "upstream_unavailable")


def error_for(exc: ProviderError) -> GatewayError:
    """The gateway's answer once every target failed with this provider error."""
    status, type_, code = _ANSWERS.get(exc.kind, _UNAVAILABLE)
    return GatewayError(
        status,
        exc.message,
        type=type_,
        code=code,
        retry_after=int(exc.retry_after or 1) if exc.kind == "rate_limit" else None,
        error_kind=exc.kind,
        provider=exc.provider,
    )
