"""The upstream transport: HTTP/2 when UPSTREAM_HTTP2 is on, HTTP/1.1 (aiohttp) by default, TLS verified against
the public CAs plus UPSTREAM_CA_BUNDLE. The provider is a small OpenAI-shaped ASGI app served by hypercorn over
TLS with ALPN (h2, http/1.1), so the protocol is negotiated exactly as with a real provider."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import threading
import time

import openai
import orjson
import pytest

from tests.gateway.conftest import _free_port, drain_events, reconfigured

pytestmark = pytest.mark.django_db(transaction=True)


class OpenAIOverTLS:
    """POST /v1/chat/completions (JSON, or SSE ending with a usage chunk and `data: [DONE]`); notes each request's
    HTTP version as the server saw it."""

    def __init__(self) -> None:
        self.versions: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.versions.append(scope["http_version"])
        request = orjson.loads(body)
        usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
        base = {"id": "chatcmpl-tls", "created": 1, "model": request["model"]}
        if not request.get("stream"):
            reply = {
                **base,
                "object": "chat.completion",
                "usage": usage,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Hello over TLS"},
                    }
                ],
            }
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": orjson.dumps(reply)})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}}]}
            for piece in ("Hello ", "over ", "TLS")
        ]
        events.append({**chunk, "choices": [], "usage": usage})
        for event in events:
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(event) + b"\n\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _self_signed(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake provider")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "provider.pem", directory / "provider.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_provider(tmp_path):
    """Yields (app, base URL, CA file) of the provider served by hypercorn over TLS."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    cert, key = _self_signed(tmp_path)
    port = _free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = cert, key
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = config.errorlog = None
    app = OpenAIOverTLS()
    stop = threading.Event()

    async def main() -> None:
        async def stopped() -> None:
            await asyncio.to_thread(stop.wait)

        await serve(app, config, shutdown_trigger=stopped)  # type: ignore[arg-type]

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("hypercorn did not start") from None
            time.sleep(0.05)
    yield app, f"https://127.0.0.1:{port}/v1", cert
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive(), "hypercorn did not stop: a connection was left open"


@pytest.fixture
def platform_openai(tenant, tls_provider, monkeypatch):
    from billing.plans import assign_plan

    assign_plan(tenant=tenant, plan_slug="enterprise")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-platform-over-tls")
    monkeypatch.setenv("OPENAI_BASE_URL", tls_provider[1])
    reconfigured()
    return tenant


def _chat_and_stream(gateway_url: str, key: str) -> None:
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0, timeout=20)
    reply = client.chat.completions.create(
        model="openai:gpt-5-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "Hello over TLS"
    assert reply.usage.completion_tokens == 5
    chunks = list(
        client.chat.completions.create(
            model="openai:gpt-5-mini",
            stream=True,
            messages=[{"role": "user", "content": "Hi"}],
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello over TLS"
    assert chunks[-1].usage.prompt_tokens == 12


@pytest.mark.parametrize(
    ("http2", "version"), [(True, "2"), (False, "1.1")], ids=["http2", "default-http1.1"]
)
def test_calls_go_over_the_negotiated_protocol_and_trust_the_extra_ca(
    settings, tls_provider, platform_openai, gateway_url, make_key, http2, version
):
    app, _, ca = tls_provider
    settings.UPSTREAM_HTTP2 = http2
    settings.UPSTREAM_CA_BUNDLE = ca
    _chat_and_stream(gateway_url, make_key(platform_openai, scopes=["gateway"]))
    assert app.versions == [version, version]
    events = drain_events()
    assert [(e.status, e.input_tokens, e.output_tokens) for e in events] == [("ok", 12, 5), ("ok", 12, 5)]


@pytest.mark.parametrize("http2", [True, False], ids=["http2", "default-http1.1"])
def test_a_certificate_no_trusted_ca_signed_is_refused(
    settings, tls_provider, platform_openai, gateway_url, make_key, http2
):
    app, _, _ = tls_provider
    settings.UPSTREAM_HTTP2 = http2
    settings.UPSTREAM_CA_BUNDLE = ""
    client = openai.OpenAI(
        base_url=gateway_url + "/v1",
        api_key=make_key(platform_openai, scopes=["gateway"]),
        max_retries=0,
        timeout=20,
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="openai:gpt-5-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code in (502, 503)
    assert "TLS handshake with 127.0.0.1 failed" in caught.value.message
    assert app.versions == [], "no request reached the provider"
    assert "sk-platform-over-tls" not in str(caught.value.body)
    assert [e.status for e in drain_events()] == ["error"]
