"""Provider adapters against the wire-format fake over HTTP, through the real pooled httpx client."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from llm.providers import ProviderError, Target, Timeouts, get_adapter
from llm.providers.base import aclose_clients
from llm.providers.openai_compat import ollama_tags

GOOD = "sk-test-good"
# Built at run time so that no committed line looks like a real AWS key id; the fake accepts the AKIATEST prefix.
TEST_ACCESS_KEY = "AKIA" + "TEST" + "EXAMPLE00001"
WRONG_ACCESS_KEY = "AKIA" + "WRONG" + "EXAMPLE0001"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def _target(fake, protocol: str, model: str = "gpt-fake", key: str = GOOD, **kw) -> Target:
    base = {
        "openai_compat": fake.url + "/v1",
        "anthropic": fake.url,
        "azure_openai": fake.url,
        "gemini": fake.url,
        "cohere": fake.url,
        "bedrock": fake.url,
    }[protocol]
    options: dict = {"deployment": model, "api_version": "2024-10-21"} if protocol == "azure_openai" else {}
    if protocol == "bedrock":
        options = {
            "region": "eu-central-1",
            "secret_access_key": key,
            "access_key_id": TEST_ACCESS_KEY if key.startswith("sk-test-") else WRONG_ACCESS_KEY,
        }
    return Target(
        provider=protocol, protocol=protocol, base_url=base, api_key=key, model=model, options=options, **kw
    )


def run(coro):
    """Each test's loop closes the upstream client it pooled, as `llm.sync.from_sync` does for its own loops (left
    to the garbage collector, aiohttp logs "Unclosed client session" at interpreter exit)."""

    async def main():
        try:
            return await coro
        finally:
            await aclose_clients()

    return asyncio.run(main())


async def _collect(gen):
    return [chunk async for chunk in gen]


PROTOCOLS = ["openai_compat", "anthropic", "azure_openai", "gemini", "cohere", "bedrock"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chat(fake, protocol):
    result = run(
        get_adapter(protocol).chat(_target(fake, protocol), {"messages": MESSAGES, "temperature": 0.2})
    )
    assert result["choices"][0]["message"]["content"].startswith("Hello from fake")
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["prompt_tokens"] == 12
    assert result["usage"]["completion_tokens"] == 5
    assert result["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_reassembles_and_ends_with_usage(fake, protocol):
    chunks = run(_collect(get_adapter(protocol).stream_chat(_target(fake, protocol), {"messages": MESSAGES})))
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert text.startswith("Hello from fake")
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_anthropic_request_is_converted_to_the_native_shape(fake):
    body = {
        "messages": [
            *MESSAGES,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": TOOLS,
        "stop": "END",
        "max_tokens": 50,
    }
    run(get_adapter("anthropic").chat(_target(fake, "anthropic"), body))
    path, headers, native = fake.requests[-1]
    assert path == "/v1/messages"
    assert headers["x-api-key"] == GOOD
    assert headers["anthropic-version"]
    assert native["system"] == "Be brief."
    assert native["max_tokens"] == 50
    assert native["stop_sequences"] == ["END"]
    assert native["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
    assert native["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    assert native["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": "sunny",
    }


@pytest.mark.parametrize("protocol", ["openai_compat", "anthropic", "gemini", "bedrock"])
def test_tool_calls_come_back_in_openai_shape(fake, protocol):
    result = run(
        get_adapter(protocol).chat(
            _target(fake, protocol, model="tool"), {"messages": MESSAGES, "tools": TOOLS}
        )
    )
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert '"Paris"' in call["function"]["arguments"]
    assert result["choices"][0]["finish_reason"] == "tool_calls"
    chunks = run(
        _collect(
            get_adapter(protocol).stream_chat(
                _target(fake, protocol, model="tool"), {"messages": MESSAGES, "tools": TOOLS}
            )
        )
    )
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert deltas[0]["function"]["name"] == "get_weather"
    assert "Paris" in "".join(d["function"].get("arguments", "") for d in deltas)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("fail-429", "rate_limit"),
        ("fail-503", "unavailable"),
        ("fail-400", "bad_request"),
        ("missing-model", "not_found"),
    ],
)
def test_error_kinds(fake, protocol, model, kind):
    with pytest.raises(ProviderError) as info:
        run(get_adapter(protocol).chat(_target(fake, protocol, model=model), {"messages": MESSAGES}))
    assert info.value.kind == kind
    if kind == "rate_limit":
        assert info.value.retry_after == 7


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_key_is_auth_and_never_echoed(fake, protocol):
    secret = "sk-live-do-not-leak-123456789"
    with pytest.raises(ProviderError) as info:
        run(get_adapter(protocol).chat(_target(fake, protocol, key=secret), {"messages": MESSAGES}))
    assert info.value.kind == "auth"
    assert secret not in info.value.message
    assert secret not in str(info.value)
    assert protocol in info.value.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_slow_first_byte_is_a_timeout(fake, protocol):
    target = _target(fake, protocol, model="slow", timeouts=Timeouts(connect=2, first_byte=0.5, idle=0.5))
    with pytest.raises(ProviderError) as info:
        run(get_adapter(protocol).chat(target, {"messages": MESSAGES}))
    assert info.value.kind == "timeout"


@pytest.mark.parametrize("protocol", ["openai_compat", "azure_openai"])
def test_stream_stalled_midway_is_a_timeout(fake, protocol):
    """Two pieces, then 3 s of silence: over the idle timeout (0.5 s), the stream ends as a timeout naming it."""
    target = _target(fake, protocol, model="stall", timeouts=Timeouts(connect=2, first_byte=2, idle=0.5))
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        run(_collect(get_adapter(protocol).stream_chat(target, {"messages": MESSAGES})))
    assert info.value.kind == "timeout"
    assert "stalled for more than 0.5 s" in info.value.message
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_cut_midway_is_unavailable(fake, protocol):
    with pytest.raises(ProviderError) as info:
        run(
            _collect(
                get_adapter(protocol).stream_chat(
                    _target(fake, protocol, model="cut"), {"messages": MESSAGES}
                )
            )
        )
    assert info.value.kind == "unavailable"


def test_connection_refused_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = Target(
        provider="ollama", protocol="openai_compat", base_url=f"http://127.0.0.1:{port}/v1", model="x"
    )
    with pytest.raises(ProviderError) as info:
        run(get_adapter("openai_compat").chat(target, {"messages": MESSAGES}))
    assert info.value.kind == "unavailable"
    assert "refused" in info.value.message


@pytest.mark.parametrize(
    "host", ["no-such-host.invalid", "tls-gateway.invalid"]
)  # the name alone says nothing
def test_dns_failure_says_so(host):
    target = Target(provider="custom", protocol="openai_compat", base_url=f"http://{host}/v1", model="x")
    with pytest.raises(ProviderError) as info:
        run(get_adapter("openai_compat").chat(target, {"messages": MESSAGES}))
    assert info.value.kind == "unavailable"
    assert "DNS" in info.value.message


@pytest.mark.parametrize("protocol", ["openai_compat", "azure_openai", "gemini", "cohere"])
def test_embeddings(fake, protocol):
    result = run(get_adapter(protocol).embeddings(_target(fake, protocol), {"input": ["a", "b"]}))
    assert len(result["data"]) == 2
    assert len(result["data"][0]["embedding"]) == 8
    assert result["usage"]["prompt_tokens"] > 0


def test_bedrock_requests_are_sigv4_signed(fake):
    run(
        get_adapter("bedrock").chat(
            _target(fake, "bedrock", model="anthropic.claude-haiku-4-5"),
            {"messages": MESSAGES, "max_tokens": 30},
        )
    )
    path, headers, native = fake.requests[-1]
    assert path == "/model/anthropic.claude-haiku-4-5/converse"
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY}/")
    assert "/eu-central-1/bedrock/aws4_request" in headers["authorization"]
    assert "x-amz-date" in headers
    assert native["system"] == [{"text": "Be brief."}]
    assert native["inferenceConfig"] == {"maxTokens": 30}


def test_anthropic_has_no_embeddings(fake):
    with pytest.raises(ProviderError) as info:
        run(get_adapter("anthropic").embeddings(_target(fake, "anthropic"), {"input": "a"}))
    assert info.value.kind == "bad_request"


def test_gemini_request_is_converted_to_the_native_shape(fake):
    run(
        get_adapter("gemini").chat(
            _target(fake, "gemini", model="gemini-2.5-flash"),
            {"messages": MESSAGES, "max_tokens": 20, "temperature": 0.1, "tools": TOOLS},
        )
    )
    path, headers, native = fake.requests[-1]
    assert path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert headers["x-goog-api-key"] == GOOD
    assert native["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert native["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert native["generationConfig"] == {"temperature": 0.1, "maxOutputTokens": 20}
    assert native["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"


def test_models_and_ollama_discovery(fake):
    assert run(get_adapter("openai_compat").list_models(_target(fake, "openai_compat"))) == [
        "gpt-fake",
        "llama3:8b",
    ]
    assert run(ollama_tags(fake.url + "/v1")) == ["llama3:8b", "qwen2.5:7b"]


def test_keyless_local_server(fake):
    target = _target(fake, "openai_compat", key="")
    assert run(get_adapter("openai_compat").chat(target, {"messages": MESSAGES}))["choices"]
    assert "authorization" not in fake.requests[-1][1]


def test_unknown_protocol_is_a_key_error():
    with pytest.raises(KeyError):
        get_adapter("smoke-signals")
