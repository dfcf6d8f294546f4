"""The one outbound choke point for LLM calls: targets, timeouts, the pooled client, and one error type."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NotRequired, Protocol, TypedDict
from urllib.parse import quote, quote_plus

import httpcore
import httpx
import orjson
from aiohttp.abc import AbstractResolver

from llm import sync
from llm.config import ssrf

if TYPE_CHECKING:
    from typing import Unpack

    from aiohttp.abc import ResolveResult

    from llm.jsontypes import JSON

KINDS = (
    "auth",
    "rate_limit",
    "not_found",
    "bad_request",
    "context_length",  # the request is longer than the model's context window (a 400 naming it)
    "content_policy",  # the provider's content policy refused the request (a 400 naming it)
    "timeout",
    "unavailable",
)

# The two native ingresses carry the client's own request through the chat-shaped call path under one key each,
# and the adapter that speaks that API keeps the native answer beside the OpenAI-shaped one the router meters (a
# reply's NATIVE_MESSAGE or NATIVE_RESPONSE; a streamed chunk's NATIVE_EVENT, for either), so the client gets what
# the provider sent. The keys' values are what a client would have to send to smuggle one in: the gateway drops them
# from every chat body.
#
# Messages (llm.gateway.anthropic_messages): the Anthropic request, which the Anthropic adapter sends as it is
# (cache_control, thinking, documents, server tools…) instead of a translation.
MESSAGES_PASSTHROUGH = "_anthropic"
NATIVE_MESSAGE = "_anthropic_message"
# Responses (llm.gateway.responses_api): the Responses request and the whole input (the stored conversation as
# items), which a target on OpenAI's own API gets as a Responses request.
RESPONSES_PASSTHROUGH = "_responses"
NATIVE_RESPONSE = "_responses_native"
NATIVE_EVENT = "_native_event"


def speaks_responses(provider: str, protocol: str) -> bool:
    """Whether a target takes OpenAI's Responses API natively: OpenAI's own API."""
    return provider == "openai" and protocol == "openai_compat"


@dataclass(slots=True, frozen=True)
class Timeouts:
    connect: float = 5.0
    first_byte: float = 60.0
    idle: float = 30.0  # the longest gap allowed between two chunks of a stream


class TargetOptions(TypedDict, total=False):
    """What a protocol needs beyond the URL and key: Azure's deployment and API version, Bedrock's region and AWS
    keys, and a credential's extra headers (sent with every request)."""

    deployment: str
    api_version: str
    region: str
    api_key: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    headers: dict[str, str]


class UsageBlock(TypedDict):
    """OpenAI's `usage` as every adapter reports it (`usage_block`): `prompt_tokens` counts every input token,
    those read from and written to the provider's prompt cache included (`prompt_tokens_details.cached_tokens`,
    `.cache_write_tokens`); `completion_tokens` counts every output token, reasoning included
    (`completion_tokens_details.reasoning_tokens`). `cost` is what the call cost in USD when the provider says so
    (OpenRouter's usage accounting: `usage.cost`, in credits of one dollar)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]
    completion_tokens_details: dict[str, int]
    cost: NotRequired[JSON]


@dataclass(slots=True)
class Target:
    """Where and how to call: the provider, its wire protocol, endpoint, secret and upstream model id."""

    provider: str
    protocol: str
    base_url: str
    api_key: str = field(default="", repr=False)
    model: str = ""
    options: TargetOptions = field(default_factory=TargetOptions, repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)


class ProviderError(Exception):
    """Any failure of an upstream call, with a kind the router acts on and a message safe to show."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        models: list[str] | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        self.models = models

    def __str__(self) -> str:
        return self.message


class Adapter(Protocol):
    """What each protocol module provides (`llm.providers.get_adapter`): OpenAI-shaped bodies in and out."""

    async def chat(self, target: Target, body: dict) -> dict: ...
    def stream_chat(self, target: Target, body: dict) -> AsyncGenerator[dict, None]: ...
    async def embeddings(self, target: Target, body: dict) -> dict: ...
    async def list_models(self, target: Target) -> list[str]: ...


# --- the pooled client: one per event loop (Celery tasks run asyncio.run per task) -------------------


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing. The pooled client serves every tenant, and providers set cookies (Cloudflare's
    `__cf_bm` on api.openai.com): a kept cookie would go out with the next tenant's call and tie their calls
    together at the provider. Not extracting also skips httpx's per-response cookie parsing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def http_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = httpx.AsyncClient(
            transport=_transport(), timeout=httpx.Timeout(60.0, connect=5.0), trust_env=False
        )
        # httpx takes cookies, not a jar class (its setter copies into a plain jar).
        client._cookies = _NoCookies()
        _clients[loop] = client
    return client


def _transport() -> httpx.AsyncBaseTransport:
    """aiohttp's transport by default (about 2 ms less CPU a call than httpx's own, bench/minimal); httpx's with
    HTTP/2 when UPSTREAM_HTTP2 is on. Either trusts the public CAs plus UPSTREAM_CA_BUNDLE, and either checks the
    addresses it dials against the SSRF guard (`ssrf.connect_refusal`)."""
    from django.conf import settings

    limits = httpx.Limits(
        max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
        max_keepalive_connections=min(200, settings.UPSTREAM_MAX_CONNECTIONS),
    )
    verify = ssl_context()
    if settings.UPSTREAM_HTTP2:
        transport = httpx.AsyncHTTPTransport(
            http1=True, http2=True, limits=limits, verify=verify, trust_env=False
        )
        # httpx takes no network backend; its pool is replaced by the same pool with the guarded one.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=True,
            network_backend=_GuardedBackend(),
        )
        return transport
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def session() -> aiohttp.ClientSession:  # called inside the event loop, on the first request
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),  # aiohttp keeps its own jar too: nothing is kept (see _NoCookies)
            connector=aiohttp.TCPConnector(
                limit=limits.max_connections or 0,
                keepalive_timeout=limits.keepalive_expiry or 5.0,
                ssl=verify,
                resolver=_GuardedResolver(),
            ),
        )

    return AiohttpTransport(limits=limits, verify=verify, trust_env=False, client=session)


class _GuardedResolver(AbstractResolver):
    """aiohttp's threaded resolver, then the SSRF guard on the answers (the addresses the connector dials)."""

    def __init__(self) -> None:
        from aiohttp import ThreadedResolver

        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        reason = ssrf.connect_refusal(host, [r["host"] for r in results])
        if reason:
            raise OSError(f"SSRF guard: {reason}")
        return results

    async def close(self) -> None:
        await self._inner.close()


class _GuardedBackend(httpcore.AnyIOBackend):
    """httpcore's asyncio backend that, for a guarded name, resolves it, checks the answers against the SSRF guard
    and dials the checked address (TLS still verifies the name and sends it as SNI)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not _is_ip(host) and ssrf.guarded(host):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [str(info[4][0]) for info in infos]
            reason = ssrf.address_refusal(host, addresses)  # guarded() was just asked
            if reason:
                raise httpcore.ConnectError(f"SSRF guard: {reason}")
            host = addresses[0]
        return await super().connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def ssl_context() -> ssl.SSLContext:
    import certifi
    from django.conf import settings

    context = ssl.create_default_context(cafile=certifi.where())
    if settings.UPSTREAM_CA_BUNDLE:
        context.load_verify_locations(cafile=settings.UPSTREAM_CA_BUNDLE)
    return context


async def aclose_clients() -> None:
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()


sync.own_loop_exit_hooks.append(aclose_clients)  # a loop made for one sync caller closes its client with it


def timeout_of(target: Target) -> httpx.Timeout:
    t = target.timeouts
    return httpx.Timeout(connect=t.connect, read=t.first_byte, write=t.first_byte, pool=t.connect)


# --- errors ---------------------------------------------------------------------------------------

_NOT_FOUND_HINTS = ("model_not_found", "does not exist", "not found", "unknown model", "no such model")
# How providers word a request longer than the context window: OpenAI and the OpenAI-compatible ones
# (`context_length_exceeded`, "maximum context length is N tokens"), Anthropic ("prompt is too long: N tokens > M
# maximum"), Gemini ("exceeds the maximum number of tokens allowed"), Bedrock ("Input is too long"), Mistral, vLLM.
_CONTEXT_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "context length",
    "prompt is too long",
    "input is too long",
    "exceeds the maximum number of tokens",
    "too many tokens",
)
# A content policy refusal: OpenAI (`content_policy_violation`), Azure OpenAI (`content_filter`,
# ResponsibleAIPolicyViolation), Bedrock guardrails.
_POLICY_HINTS = (
    "content_policy",
    "content policy",
    "content_filter",
    "responsibleaipolicyviolation",
    "guardrail",
)


REDACTED = "[REDACTED]"
_MESSAGE_CHARS = 300
_KEY_SHAPED = re.compile(r"\b(sk|pk|rk)[-_][A-Za-z0-9_\-]{6,}")


def target_secrets(target: Target) -> list[str]:
    """Every secret of the credential in use: its API key or bearer token (Azure's key too), the AWS access key id,
    secret key and session token, and the values of its extra headers."""
    options = target.options or {}
    values = [
        target.api_key,
        *(
            str(options.get(k) or "")
            for k in ("api_key", "access_key_id", "secret_access_key", "session_token")
        ),
    ]
    values += [str(v) for v in (options.get("headers") or {}).values()]
    return [v for v in values if v]


def scrub(text: str, *secrets: str) -> str:
    """Remove every secret (as sent, JSON-escaped or URL-encoded, in any letter case) and anything key-shaped from an
    upstream message; shorten it. The message is shortened only after scrubbing, so no secret is cut in half."""
    text = str(text)[:100_000]
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= 4:
            forms.update(
                {secret, orjson.dumps(secret).decode()[1:-1], quote(secret, safe=""), quote_plus(secret)}
            )
    if forms:
        pattern = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        text = re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)
    text = _KEY_SHAPED.sub(REDACTED, text)
    return text[:_MESSAGE_CHARS]


def scrub_for(target: Target, text: str) -> str:
    """An upstream message with every secret of `target` removed (see `scrub`)."""
    return scrub(text, *target_secrets(target))


class _ErrorDetails(TypedDict, total=False):
    status: int | None
    retry_after: float | None
    models: list[str] | None


def upstream_error(
    target: Target, kind: str, what: str, text: object, **kwargs: Unpack[_ErrorDetails]
) -> ProviderError:
    """A ProviderError quoting the upstream ("<provider> <what>: <text>"): the way every adapter turns an upstream's
    own words into an error, scrubbed of the target's secrets, so what reaches a response, a log, an audit entry or
    an assistant message never holds a secret of the credential in use."""
    return ProviderError(
        kind, f"{target.provider} {what}: {scrub_for(target, str(text))}", provider=target.provider, **kwargs
    )


def _message_from_body(raw: bytes) -> str:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:100_000].decode("utf-8", "replace").strip()
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("msg") or err.get("type") or err)
        if isinstance(err, str):
            return data.get("message") or err
        return str(data.get("message") or data)
    return str(data)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def error_from_response(target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
    """Map an upstream HTTP error to a ProviderError; the message names the provider, never a secret."""
    detail = _message_from_body(raw)
    lowered = detail.lower()
    if status in (401, 403):
        kind = "auth"
    elif status == 404 or (status in (400, 422) and any(h in lowered for h in _NOT_FOUND_HINTS)):
        kind = "not_found"
    elif status == 429:
        kind = "rate_limit"
    elif status in (400, 413, 422):
        kind = _bad_request_kind(f"{lowered} {_error_code(raw)}")
    else:
        kind = "unavailable"
    return upstream_error(
        target, kind, f"answered {status}", detail, status=status, retry_after=_retry_after(headers)
    )


def _error_code(raw: bytes) -> str:
    """The machine-readable part of an error body (OpenAI's `code` and `type`), lowered; empty if none."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return ""
    return f"{err.get('code') or ''} {err.get('type') or ''} {err.get('status') or ''}".lower()


def _bad_request_kind(lowered: str) -> str:
    if any(h in lowered for h in _CONTEXT_HINTS):
        return "context_length"
    if any(h in lowered for h in _POLICY_HINTS):
        return "content_policy"
    return "bad_request"


def error_from_exception(target: Target, exc: BaseException) -> ProviderError:
    """Map a transport failure (timeout, refused, DNS, TLS) to a ProviderError with an actionable message."""
    host = httpx.URL(target.base_url).host if target.base_url else "?"
    # The aiohttp transport reports refused connections and DNS failures as ConnectTimeout: read the cause first.
    text = f"{exc.__class__.__name__}: {exc} {exc.__cause__!r}".lower()
    if host != "?":
        text = text.replace(host.lower(), "<host>")  # a name like tls-gw.example.com must not steer the match
    if "ssrf guard:" in text:  # the resolver refused the address (see ssrf.connect_refusal)
        return ProviderError(
            "unavailable",
            f"{target.provider}: {host} resolved to a non-public address when "
            "connecting; only public endpoints are allowed",
            provider=target.provider,
        )
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError) and not any(
        s in text
        for s in (
            "connect call failed",
            "refused",
            "name or service",
            "getaddrinfo",
            "certificate",
            "sslerror",
            "[ssl",
        )
    ):
        return ProviderError(
            "timeout", f"{target.provider} did not answer in time ({host})", provider=target.provider
        )
    if "certificate" in text or "sslerror" in text or "[ssl" in text or "tls" in text:
        message = f"TLS handshake with {host} failed (certificate or protocol problem)"
    elif (
        "name or service not known" in text
        or "getaddrinfo" in text
        or "nodename" in text
        or "dns" in text
        or "temporary failure in name resolution" in text
    ):
        message = f"DNS lookup failed for {host}"
    elif "refused" in text or "connect call failed" in text:
        message = f"connection refused to {host}"
    elif "disconnect" in text or "closed" in text or "payload" in text or "reset" in text:
        message = f"connection to {host} was cut"
    else:
        message = f"could not reach {host} ({exc.__class__.__name__})"
    return ProviderError("unavailable", f"{target.provider}: {message}", provider=target.provider)


async def send(
    target: Target, method: str, url: str, *, headers: dict, json_body: object = None, stream: bool = False
) -> httpx.Response:
    """Send a request; return the response (streaming: open, headers read) or raise ProviderError."""
    client = http_client()
    content = orjson.dumps(json_body) if json_body is not None else None
    all_headers = {"content-type": "application/json", **headers, **(target.options.get("headers") or {})}
    try:
        request = client.build_request(
            method, url, content=content, headers=all_headers, timeout=timeout_of(target)
        )
        response = await client.send(request, stream=True)
    except (
        ValueError,
        TypeError,
        httpx.LocalProtocolError,
        httpx.UnsupportedProtocol,
        httpx.InvalidURL,
    ) as exc:
        # a header or URL no HTTP client will send (a stored value with a line break, say)
        raise ProviderError(
            "bad_request",
            f"{target.provider}: the endpoint's settings hold a header or URL that "
            f"cannot be sent ({exc.__class__.__name__}); correct them in the LLM settings",
            provider=target.provider,
        ) from None
    except (TimeoutError, httpx.HTTPError, OSError) as exc:
        raise error_from_exception(target, exc) from None
    if response.status_code >= 400:
        try:
            async with asyncio.timeout(target.timeouts.idle):
                raw = await response.aread()
        except (TimeoutError, httpx.HTTPError, OSError):
            raw = b""
        finally:
            await response.aclose()
        raise error_from_response(target, response.status_code, raw, response.headers)
    if not stream:
        await read_bounded(target, response)
    return response


def _max_body() -> int:
    from django.conf import settings

    return settings.UPSTREAM_MAX_BODY_BYTES


async def read_bounded(target: Target, response: httpx.Response) -> bytes:
    """Read a whole answer, refusing one larger than UPSTREAM_MAX_BODY_BYTES (what a provider sends never grows
    the gateway's memory without bound); closes the response."""
    limit = _max_body()
    try:
        declared = int(response.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        if declared > limit:
            raise ProviderError(
                "unavailable",
                f"{target.provider} sent an answer larger than {limit:,} bytes",
                provider=target.provider,
            )
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise ProviderError(
                    "unavailable",
                    f"{target.provider} sent an answer larger than {limit:,} bytes",
                    provider=target.provider,
                )
            chunks.append(chunk)

    try:
        async with asyncio.timeout(target.timeouts.first_byte):
            await read()
    except (TimeoutError, httpx.HTTPError, OSError) as exc:
        raise error_from_exception(target, exc) from None
    finally:
        await response.aclose()
    response._content = b"".join(chunks)  # what response.content returns from now on
    return response._content


def json_of(target: Target, response: httpx.Response) -> JSON:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ProviderError(
            "unavailable",
            f"{target.provider} sent a body that is not JSON",
            provider=target.provider,
            status=response.status_code,
        ) from None


async def _bounded_lines(target: Target, response: httpx.Response) -> AsyncGenerator[str, None]:
    """The stream's lines, refusing one longer than UPSTREAM_MAX_SSE_LINE_BYTES (httpx's own line reader keeps
    any length in memory)."""
    from django.conf import settings

    limit = settings.UPSTREAM_MAX_SSE_LINE_BYTES
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        if len(buffer) > limit:
            raise ProviderError(
                "unavailable",
                f"{target.provider} sent a stream line longer than {limit:,} bytes",
                provider=target.provider,
            )
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", "replace")


async def sse_events(target: Target, response: httpx.Response) -> AsyncGenerator[tuple[str, str], None]:
    """Yield (event, data) pairs of a server-sent-event stream; a gap over timeouts.idle is a timeout.

    Each line is awaited under its own `asyncio.timeout` (never across a `yield`, which would let the deadline
    cancel the consumer), not `asyncio.wait_for`, which on Python 3.11 wraps every line in a new task."""
    lines = _bounded_lines(target, response)
    event = ""
    data: list[str] = []
    try:
        while True:
            try:
                async with asyncio.timeout(target.timeouts.idle):
                    line = await anext(lines)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ProviderError(
                    "timeout",
                    f"{target.provider} stream stalled for more than {target.timeouts.idle:g} s",
                    provider=target.provider,
                ) from None
            except (httpx.HTTPError, OSError) as exc:
                raise error_from_exception(target, exc) from None
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
        if data:
            yield event, "\n".join(data)
    finally:
        await response.aclose()


def token_count(value: object) -> int:
    """A count from a provider's usage as an int; anything that is not a number counts 0 (metering bounds it)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    try:
        return int(value)
    except OverflowError:  # infinity
        return 0


def usage_block(
    prompt: int,
    completion: int,
    cached: int = 0,
    cost: JSON = None,
    *,
    cache_write: int = 0,
    cache_write_1h: int = 0,
    reasoning: int = 0,
) -> UsageBlock:
    """The usage block; `prompt` and `completion` are totals (cache reads and writes, reasoning included), the
    details say how much of them was what. `cost` (as the provider sent it, checked where it is metered) only when
    there is one."""
    block: UsageBlock = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if cache_write:  # not OpenAI's (its cache is written free); named as OpenRouter and Azure name it
        block["prompt_tokens_details"]["cache_write_tokens"] = cache_write
    if cache_write_1h:  # the part of the writes kept an hour (Anthropic's `ttl: "1h"`), priced apart
        block["prompt_tokens_details"]["cache_write_1h_tokens"] = cache_write_1h
    if cost is not None:
        block["cost"] = cost
    return block
