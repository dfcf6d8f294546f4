"""What to do about a failed call, in plain words: the connection test's hint and the assistant's.

A hint blames only what the user controls. A provider's own address (BYOK, platform) was typed by nobody, so a
DNS, TLS or connection failure there is this server's network, not a spelling mistake; an endpoint of the
tenant's own (custom mode) was typed by them, so its URL is worth checking. Ollama's own failures (a model never
pulled, not enough memory, the slow first load of a model) get Ollama's own remedies.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from llm.calls.errors import GatewayError

# The providers of a tenant's own endpoints (custom mode): their address is the tenant's.
OWN_ENDPOINT_KINDS = frozenset({"openai_compatible", "azure_openai", "bedrock", "ollama"})

_OLLAMA_NOT_PULLED = re.compile(
    r"model [\"'“]?([^\"'”]+?)[\"'”]? not found, try pulling it first", re.IGNORECASE
)
_OUT_OF_MEMORY = (
    "requires more system memory",
    "out of memory",
    "insufficient memory",
    "not enough memory",
    "cudamalloc failed",
    "unable to allocate",
)
_OPERATOR = (
    "Nothing you entered is wrong; try again later, or tell whoever runs this installation if it persists."
)


def host_of(url: str) -> str:
    """The host of a provider's address (the error's own words name it when the address is not known here)."""
    return urlsplit(url).hostname or url or "the provider's address"


def problem_hint(
    kind: str,
    message: str,
    *,
    base_url: str = "",
    provider: str = "",
    model: str = "",
    seconds: float | None = None,
    own_endpoint: bool | None = None,
) -> str:
    """The remedy for a failure of `kind` ("auth", "timeout", … or "blocked", "config") whose text is `message`.

    `own_endpoint`: whether the user typed the address (default: the provider is one of the tenant's own endpoint
    kinds)."""
    lowered = message.lower()
    own = provider in OWN_ENDPOINT_KINDS if own_endpoint is None else own_endpoint
    ollama = (
        provider == "ollama"
        or ":11434" in base_url
        or "ollama" in lowered
        or "try pulling it first" in lowered
    )
    pulled = _OLLAMA_NOT_PULLED.search(message)
    if pulled:
        name = pulled.group(1)
        return (
            f"The Ollama server has not downloaded “{name}” yet. Run `ollama pull {name}` on that server (or pick "
            "a model it already has), then try again."
        )
    if any(s in lowered for s in _OUT_OF_MEMORY):
        return (
            "The server does not have enough memory to load this model. Pick a smaller model (fewer parameters, "
            "or a more compressed variant such as a q4 one), or free memory on the server"
            + (" (`ollama ps` lists the models loaded, `ollama stop NAME` unloads one)." if ollama else ".")
        )
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return simple
    if kind == "not_found":
        return f"The endpoint does not know the model “{model or '?'}”. Pick one it offers."
    if kind == "timeout":
        return _timeout_hint(base_url, own=own, ollama=ollama, seconds=seconds)
    return _network_hint(lowered, base_url, own=own)


_SIMPLE = {
    "auth": (
        "The key was refused (401/403). Check that it was copied completely, is still active and belongs to this "
        "provider or endpoint."
    ),
    "rate_limit": (
        "The provider answered 429: the account has no credit left or is rate-limited. Check the billing page of "
        "the provider, or try again in a minute."
    ),
    "bad_request": "The provider rejected the request; check the model name and the endpoint's settings.",
    "context_length": (
        "The conversation is longer than this model can read at once: start a new chat, or pick a model with a "
        "larger context."
    ),
    "content_policy": "The provider refused this content under its usage policy; rephrase the request.",
    "blocked": "Only public http(s) endpoints may be called here; use the endpoint's public address.",
    "config": "Fix the LLM settings (mode, model, key or endpoint) and test again.",
    "not_allowed": (
        "Pick a model the allow-list names, or widen the list (API keys or Agents), then test again."
    ),
    "cap": "Raise or remove the hard cap under Billing → Caps, or wait until the month resets.",
}


def _timeout_hint(base_url: str, *, own: bool, ollama: bool, seconds: float | None) -> str:
    within = f" within {seconds:g} s" if seconds else " in time"
    if ollama:
        return (
            f"No answer{within}. Ollama loads a model into memory on its first call, which can take a minute or "
            "more for a large one: try again in a minute. If it keeps timing out, the server may be short of "
            "memory for this model; pick a smaller one."
        )
    if own:
        return (
            f"No answer from {base_url or 'the endpoint'}{within}: the server may be overloaded, or the URL may "
            "not point to an LLM API."
        )
    return f"{host_of(base_url)} did not answer{within}: the provider may be overloaded or slow right now. Try again in a minute."


def _network_hint(lowered: str, base_url: str, *, own: bool) -> str:
    where, host = base_url or "the endpoint", host_of(base_url)
    if "refused" in lowered:
        if own:
            return (
                f"Nothing is listening at {where}. Is the server (e.g. Ollama: `ollama serve`) running, and are the "
                "host and port in the URL right?"
            )
        return (
            f"This server could not connect to {host}: its outbound connections may be blocked. {_OPERATOR}"
        )
    if "dns" in lowered:
        if own:
            return f"The host name in {where} does not resolve: check the spelling of the URL."
        return f"This server could not look up {host}: its name lookup (DNS) or internet access is not working. {_OPERATOR}"
    if "tls" in lowered or "certificate" in lowered:
        if own:
            return (
                "The TLS handshake failed: the certificate is not trusted or the server does not speak https on "
                "that port (try http:// for a local server)."
            )
        return (
            f"The secure connection to {host} failed: something on this server's network (a proxy) may be "
            f"intercepting it. {_OPERATOR}"
        )
    if own:
        return f"Could not reach {where}: check the URL and that the server is up."
    return f"Could not reach {host} from this server. {_OPERATOR}"


def gateway_problem(exc: GatewayError) -> tuple[str, str]:
    """(kind, hint) for a call that failed with `exc`: for the assistant, which shows both with a link to act."""
    code = exc.code or ""
    if exc.status == 402 or code.endswith("_budget_reached"):
        if code == "tcu_hard_cap_reached":
            return "cap", _SIMPLE["cap"]
        return (
            "cap",
            "Raise this budget (the agent's page, or the key's limit on API keys), or wait for the month to reset.",
        )
    if exc.provider:
        return exc.error_kind, problem_hint(exc.error_kind, exc.message, provider=exc.provider)
    if exc.status == 429:
        return "rate", "Too many calls at once for this workspace's plan: wait a few seconds and send again."
    if exc.status in (400, 403, 404):
        return "config", "Check the LLM settings: the mode, the model and its key or endpoint."
    return "internal", "Something went wrong on our side; send again in a moment."
