"""A fake LLM provider speaking the real wire formats over HTTP, for tests (and `python -m tests.fakes.upstream`).

Shapes relied on (from the providers' API references):
- OpenAI: POST /v1/chat/completions (JSON; SSE `data: {chunk}` lines ending `data: [DONE]`, a final chunk with
  `choices: []` and `usage` when `stream_options.include_usage`), POST /v1/embeddings, GET /v1/models, errors
  `{"error": {"message", "type", "param", "code"}}` with 401/404/429(+Retry-After)/5xx.
- Azure OpenAI: the same bodies at /openai/deployments/{deployment}/chat/completions?api-version=…, `api-key` header.
- Ollama: GET /api/tags → {"models": [{"name": "llama3:8b", …}]}.
- vLLM (started with --api-key): GET /vllm/v1/models (Bearer required) → {"object": "list", "data": [{"id", …}]}
  and POST /vllm/v1/chat/completions; no /vllm/api/tags (404), like a server that is not Ollama.
- Gemini: POST /v1beta/models/{model}:generateContent | :streamGenerateContent?alt=sse | :batchEmbedContents with
  `x-goog-api-key`; {candidates[{content{role, parts}, finishReason}], usageMetadata{promptTokenCount,
  candidatesTokenCount}}; errors {"error": {"code", "message", "status"}}.
- Cohere v2: POST /v2/chat (Bearer) → {id, finish_reason, message{role, content[{type: text, text}]}, usage{tokens}};
  SSE events message-start, content-delta, message-end; POST /v2/embed → {embeddings{float}, meta{billed_units}}.
- Bedrock: POST /model/{id}/converse and /converse-stream, SigV4 `Authorization: AWS4-HMAC-SHA256 Credential=…`;
  the stream is AWS event-stream binary frames (prelude: total length, headers length, CRC32; string headers
  `:event-type`, `:message-type`, `:content-type`; JSON payload; message CRC32); errors carry `x-amzn-errortype`.
- Anthropic: POST /v1/messages with `x-api-key` and `anthropic-version`; JSON {id, type: message, content[…],
  stop_reason, usage{input_tokens, output_tokens}}; SSE events message_start, content_block_start,
  content_block_delta, content_block_stop, message_delta, message_stop; errors {"type": "error", "error": {…}}.

Behaviour is chosen by the request: keys starting `sk-test-` are valid (OpenAI paths also accept no key, like
Ollama), any other key gets the provider's 401; the model name picks a case: `fail-429`, `fail-500`, `fail-503`,
`fail-400`, `missing-model` (404), `slow` (3 s before the first byte), `cut` (stream dropped after two chunks),
`tool` (a tool call to the request's first tool; also any model when the request forces a tool: OpenAI's
`tool_choice` "required" or a function, Anthropic's {"type": "any" | "tool"}), `drip` (a stream of 50 chunks, 50 ms apart), `stall` (a stream
that stops for 3 s after two pieces); anything else is
answered "Hello from fake <protocol>!" with usage 12 prompt / 5 completion tokens (an OpenAI chat answer reports
`fake.usage` instead when a test sets it; every chat answer, streamed or not, reports `fake.usage_details`, with
cache reads / writes and reasoning in its protocol's own fields, when a test sets it). A prompt saying
`overflow:<upstream model>` gets that provider's context-window error (OpenAI, Anthropic, Gemini),
`policy:<upstream model>` OpenAI's content policy refusal. Any path under `/status/<code>/`
answers that status (a base URL that always fails, e.g. `http://…/status/503/v1`). Like OpenRouter (usage
accounting), an OpenAI chat answer for a `vendor/model` name also reports what it cost, `usage.cost` =
REPORTED_COST USD (in the stream's usage chunk too), except for a model named `…/no-cost`.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

TEXT = "Hello from fake {protocol}!"
PROMPT_TOKENS, COMPLETION_TOKENS = 12, 5
COUNTED_TOKENS = 37  # what the fake Anthropic's /v1/messages/count_tokens answers
REPORTED_COST = 0.000123  # USD, what an OpenRouter-style answer reports as usage.cost


@dataclass(frozen=True)
class UsageDetails:
    """Usage every chat answer reports instead of 12 / 5 when a test sets `fake.usage_details`, streamed or not,
    each protocol in its own wire format. Counted as OpenAI counts: `prompt` is every input token (the cache reads
    and writes included), `completion` every output token (reasoning included)."""

    prompt: int
    completion: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    cache_write_1h: int = 0  # the part of `cache_write` kept an hour (Anthropic reports writes by duration)

    def openai(self) -> dict:
        """`prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`; a cache write as
        OpenRouter and Azure report it (`prompt_tokens_details.cache_write_tokens`)."""
        details: dict = {"cached_tokens": self.cache_read}
        if self.cache_write:
            details["cache_write_tokens"] = self.cache_write
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": details,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }

    def responses(self) -> dict:
        """OpenAI's Responses API: `input_tokens_details.cached_tokens`, `output_tokens_details.reasoning_tokens`."""
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cache_read},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.completion,
        }

    def anthropic(self) -> dict:
        """`input_tokens` leaves the cache reads and writes out; thinking is inside `output_tokens`."""
        return {
            "input_tokens": self.prompt - self.cache_read - self.cache_write,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write - self.cache_write_1h,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": self.completion,
        }

    def gemini(self) -> dict:
        """`promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount` leaves out
        `thoughtsTokenCount` (Gemini has no per-call cache write: a write is counted as plain prompt)."""
        meta = {
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": self.completion - self.reasoning,
            "totalTokenCount": self.prompt + self.completion,
        }
        if self.cache_read:
            meta["cachedContentTokenCount"] = self.cache_read
        if self.reasoning:
            meta["thoughtsTokenCount"] = self.reasoning
        return meta

    def bedrock(self) -> dict:
        """Converse: `inputTokens` leaves the cache reads and writes out, `totalTokens` adds all four; the writes
        by TTL in `cacheDetails` (1h before 5m)."""
        usage = {
            "inputTokens": self.prompt - self.cache_read - self.cache_write,
            "outputTokens": self.completion,
            "totalTokens": self.prompt + self.completion,
        }
        if self.cache_read:
            usage["cacheReadInputTokens"] = self.cache_read
        if self.cache_write:
            usage["cacheWriteInputTokens"] = self.cache_write
            details = [("1h", self.cache_write_1h), ("5m", self.cache_write - self.cache_write_1h)]
            usage["cacheDetails"] = [{"ttl": ttl, "inputTokens": n} for ttl, n in details if n]
        return usage

    def cohere(self) -> dict:
        tokens = {"input_tokens": self.prompt, "output_tokens": self.completion}
        return {"billed_units": dict(tokens), "tokens": tokens}


def _cost(model: str) -> dict:
    """OpenRouter's usage accounting: a `vendor/model` answer says what it cost, unless the model is `…/no-cost`."""
    return {"cost": REPORTED_COST} if "/" in model and not model.endswith("/no-cost") else {}


def _refusal(body: Any, model: str) -> str | None:
    """A request whose text says `overflow:<model>` does not fit that model's context window, one that says
    `policy:<model>` is refused by its content policy: each provider answers in its own words (fallback tests)."""
    text = orjson.dumps(body).decode() if body is not None else ""
    if f"overflow:{model}" in text:
        return "context"
    if f"policy:{model}" in text:
        return "policy"
    return None


def _anthropic_tool_wanted(body: dict, model: str) -> bool:
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    return (model == "tool" or forced) and bool(body.get("tools"))


def _pieces(text: str, n: int = 4) -> list[str]:
    size = max(1, len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


class FakeUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        # (prompt, completion) tokens the OpenAI chat answer reports instead of 12 / 5: large usage for cap tests.
        self.usage: tuple[int, int] | None = None
        # Usage with cache reads / writes and reasoning every chat answer reports (see UsageDetails).
        self.usage_details: UsageDetails | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        self.requests.clear()
        self.usage = None
        self.usage_details = None

    def _wire_usage(self, protocol: str, default: dict) -> dict:
        """The usage a chat answer of `protocol` reports: `usage_details` in its wire format when a test set it."""
        return getattr(self.usage_details, protocol)() if self.usage_details else default

    # --- lifecycle -------------------------------------------------------------------------------
    @web.middleware
    async def forced_status(self, request: web.Request, handler):
        """`/status/<code>/…` answers that status on any path: a target that keeps failing, for failover tests."""
        parts = request.path.split("/")
        if len(parts) > 2 and parts[1] == "status" and parts[2].isdigit():
            await self._record(request)
            code = int(parts[2])
            return web.json_response(
                {"error": {"message": f"forced {code}", "type": "server_error", "code": None}},
                status=code,
                headers={"retry-after": "1"} if code == 429 else None,
            )
        return await handler(request)

    @staticmethod
    async def _set_cookie(request: web.Request, response: web.StreamResponse) -> None:
        """Every answer sets a cookie, as providers behind Cloudflare do (`__cf_bm` on api.openai.com): the
        gateway's pooled client must never send one back (tests/gateway/test_gateway.py)."""
        response.headers.add("Set-Cookie", f"upstream_session={uuid.uuid4().hex}; Path=/; HttpOnly")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.forced_status])
        app.on_response_prepare.append(self._set_cookie)
        app.router.add_post("/v1/chat/completions", self.openai_chat)
        app.router.add_post("/v1/embeddings", self.openai_embeddings)
        app.router.add_get("/v1/models", self.openai_models)
        app.router.add_post("/v1/responses", self.openai_responses)
        app.router.add_get("/api/tags", self.ollama_tags)
        # A vLLM-style server behind a bearer token: OpenAI's model list and chat under /vllm/v1, no Ollama API.
        app.router.add_get("/vllm/v1/models", self.vllm_models)
        app.router.add_post("/vllm/v1/chat/completions", self.openai_chat)
        app.router.add_get("/slow/api/tags", self.slow_ollama_tags)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.azure_chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self.azure_embeddings)
        app.router.add_post("/v1/messages", self.anthropic_messages)
        app.router.add_post("/v1/messages/count_tokens", self.anthropic_count_tokens)
        app.router.add_post("/v1beta/models/{model:[^:/]+}:{method}", self.gemini)
        app.router.add_post("/v2/chat", self.cohere_chat)
        app.router.add_post("/model/{model}/converse", self.bedrock_converse)
        app.router.add_post("/model/{model}/converse-stream", self.bedrock_converse)
        app.router.add_post("/v2/embed", self.cohere_embed)
        app.router.add_get("/health", self.health)
        return app

    def start(self) -> FakeUpstream:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-upstream")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)  # type: ignore[union-attr]
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    # --- helpers ---------------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        self.requests.append((request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        return body

    @staticmethod
    def _openai_error(
        status: int,
        message: str,
        code: str,
        type_: str = "invalid_request_error",
        headers: dict | None = None,
    ) -> web.Response:
        return web.json_response(
            {"error": {"message": message, "type": type_, "param": None, "code": code}},
            status=status,
            headers=headers,
        )

    def _openai_auth(self, request: web.Request, header: str = "authorization") -> web.Response | None:
        value = request.headers.get(header, "")
        key = value[7:] if value.lower().startswith("bearer ") else value
        if not value and header == "authorization":
            return None  # keyless local servers (Ollama, vLLM)
        if not key.startswith("sk-test-"):
            return self._openai_error(401, f"Incorrect API key provided: {key}.", "invalid_api_key")
        return None

    def _openai_case(self, model: str) -> web.Response | None:
        if model == "fail-429":
            return self._openai_error(
                429,
                "Rate limit reached for requests",
                "rate_limit_exceeded",
                "requests",
                headers={"Retry-After": "7"},
            )
        if model in ("fail-500", "fail-503"):
            return self._openai_error(
                int(model[-3:]), "The server had an error", "server_error", "server_error"
            )
        if model == "fail-400":
            return self._openai_error(400, "Invalid 'messages': bad request", "invalid_value")
        if model == "missing-model":
            return self._openai_error(404, "The model `missing-model` does not exist", "model_not_found")
        return None

    async def _odd_case(self, request: web.Request, model: str, body: dict) -> web.StreamResponse | None:
        """Answers a provider should never give, for the trust-core tests: `odd-usage` (token counts beyond 64 bits
        and negative), `not-an-object` (a JSON list), `huge-body` (3 MB), `long-line` (one 3 MB SSE line),
        `odd-chunk` (a stream chunk that is a list)."""
        base = {
            "id": "chatcmpl-odd",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
        }
        if model == "odd-usage":
            usage = {
                "prompt_tokens": 2**70,
                "completion_tokens": -3,
                "total_tokens": "many",
                "prompt_tokens_details": {"cached_tokens": -1},
            }
            if body.get("stream"):
                response = web.StreamResponse(headers={"content-type": "text/event-stream"})
                await response.prepare(request)
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": "odd"}, "finish_reason": "stop"}],
                }
                await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                import json  # orjson refuses integers beyond 64 bits, which is the point here

                await response.write(
                    b"data: " + json.dumps({**chunk, "choices": [], "usage": usage}).encode() + b"\n\n"
                )
                await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
                return response
            return web.json_response(
                {
                    **base,
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "odd"},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        if model == "not-an-object":
            return web.json_response([1, 2])
        if model == "huge-body":
            return web.json_response(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "x" * 3_000_000},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        if model in ("long-line", "odd-chunk"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            if model == "long-line":
                await response.write(b"data: " + b"x" * 3_000_000 + b"\n\n")
            else:
                await response.write(b"data: [1]\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        return None

    # --- OpenAI -------------------------------------------------------------------------------------
    def _openai_refusal(self, body: dict, model: str) -> web.Response | None:
        refused = _refusal(body, model)
        if refused == "context":
            return self._openai_error(
                400,
                "This model's maximum context length is 400000 tokens. However, your messages resulted in "
                "512000 tokens. Please reduce the length of the messages.",
                "context_length_exceeded",
            )
        if refused == "policy":
            return self._openai_error(
                400, "Your request was rejected as a result of our safety system.", "content_policy_violation"
            )
        return None

    async def openai_chat(
        self, request: web.Request, protocol: str = "openai_compat", auth_header: str = "authorization"
    ):
        body = await self._record(request)
        denied = self._openai_auth(request, auth_header)
        if denied is not None:
            return denied
        model = body.get("model") or request.match_info.get("deployment", "")
        failure = self._openai_case(model) or self._openai_refusal(body, model)
        if failure is not None:
            return failure
        odd = await self._odd_case(request, model, body)
        if odd is not None:
            return odd
        if model == "slow":
            await asyncio.sleep(3)
        text = TEXT.format(protocol=protocol)
        tool_calls = None
        forced = body.get("tool_choice") == "required" or isinstance(body.get("tool_choice"), dict)
        if (model == "tool" or forced) and body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            tool_calls = [
                {
                    "id": "call_" + uuid.uuid4().hex[:8],
                    "type": "function",
                    "function": {"name": name, "arguments": '{"city": "Paris"}'},
                }
            ]
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        prompt_tokens, completion_tokens = self.usage or (PROMPT_TOKENS, COMPLETION_TOKENS)
        if not body.get("stream"):
            message: dict = {"role": "assistant", "content": None if tool_calls else text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if tool_calls else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                        **(self.usage_details.openai() if self.usage_details else {}),
                        **_cost(model),
                    },
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def emit(obj: Any) -> None:
            await response.write(b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n")

        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        pieces = [f"tok{i} " for i in range(50)] if model == "drip" else _pieces(text)
        await emit(
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ],
            }
        )
        if tool_calls:
            await emit(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"tool_calls": [{"index": 0, **tool_calls[0]}]},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        else:
            for i, piece in enumerate(pieces):
                if model == "cut" and i == 2:
                    request.transport.close()  # type: ignore[union-attr]
                    return response
                if model == "drip":
                    await asyncio.sleep(0.05)
                if model == "stall" and i == 2:
                    await asyncio.sleep(3)
                await emit(
                    {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                )
        await emit(
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "tool_calls" if tool_calls else "stop"}
                ],
            }
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            completion = len(pieces) if model == "drip" else COMPLETION_TOKENS
            await emit(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": completion,
                        "total_tokens": PROMPT_TOKENS + completion,
                        **(self.usage_details.openai() if self.usage_details else {}),
                        **_cost(model),
                    },
                }
            )
        await emit(b"[DONE]")
        await response.write_eof()
        return response

    async def openai_embeddings(self, request: web.Request, auth_header: str = "authorization"):
        body = await self._record(request)
        denied = self._openai_auth(request, auth_header)
        if denied is not None:
            return denied
        failure = self._openai_case(body.get("model", ""))
        if failure is not None:
            return failure
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        return web.json_response(
            {
                "object": "list",
                "model": body.get("model"),
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.125 * (j + 1) for j in range(8)]}
                    for i, _ in enumerate(inputs)
                ],
                "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
            }
        )

    async def openai_responses(self, request: web.Request):
        """OpenAI's Responses API: a Response object, or its stream of events (response.created … .completed); a
        forced function tool (`tool_choice` "required" or a function) answers with a function_call item."""
        body = await self._record(request)
        denied = self._openai_auth(request)
        if denied is not None:
            return denied
        model = str(body.get("model") or "")
        failure = self._openai_case(model)
        if failure is not None:
            return failure
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        forced = body.get("tool_choice") == "required" or isinstance(body.get("tool_choice"), dict)
        rid, text = "resp_" + uuid.uuid4().hex[:12], TEXT.format(protocol="openai_responses")
        if tools and (forced or model == "tool"):
            item = {
                "type": "function_call",
                "id": "fc_" + uuid.uuid4().hex[:8],
                "call_id": "call_" + uuid.uuid4().hex[:8],
                "name": tools[0]["name"],
                "arguments": '{"city": "Paris"}',
                "status": "completed",
            }
        else:
            content = [{"type": "output_text", "text": text, "annotations": []}]
            item = {
                "type": "message",
                "id": "msg_" + uuid.uuid4().hex[:8],
                "status": "completed",
                "role": "assistant",
                "content": content,
            }
        usage = self._wire_usage("responses", UsageDetails(PROMPT_TOKENS, COMPLETION_TOKENS).responses())
        done = {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model,
            "output": [item],
            "usage": usage,
            "error": None,
            "incomplete_details": None,
        }
        if not body.get("stream"):
            return web.json_response(done)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        seq = iter(range(10_000))

        async def emit(kind: str, **fields: Any) -> None:
            data = orjson.dumps({"type": kind, "sequence_number": next(seq), **fields})
            await response.write(f"event: {kind}\n".encode() + b"data: " + data + b"\n\n")

        start = {**done, "status": "in_progress", "output": [], "usage": None}
        await emit("response.created", response=start)
        await emit("response.in_progress", response=start)
        if item["type"] == "message":
            await emit(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "content": []},
            )
            at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
            await emit(
                "response.content_part.added",
                **at,
                part={"type": "output_text", "text": "", "annotations": []},
            )
            for piece in _pieces(text):
                await emit("response.output_text.delta", **at, delta=piece, logprobs=[])
            await emit("response.output_text.done", **at, text=text, logprobs=[])
            await emit("response.content_part.done", **at, part=item["content"][0])
        else:
            await emit(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            await emit(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=0,
                delta=item["arguments"],
            )
            await emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=0,
                arguments=item["arguments"],
            )
        await emit("response.output_item.done", output_index=0, item=item)
        await emit("response.completed", response=done)
        await response.write_eof()
        return response

    async def openai_models(self, request: web.Request):
        await self._record(request)
        denied = self._openai_auth(request)
        if denied is not None:
            return denied
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in ("gpt-fake", "llama3:8b")
                ],
            }
        )

    async def vllm_models(self, request: web.Request):
        """vLLM started with --api-key: every request needs the bearer token (`sk-test-…`)."""
        await self._record(request)
        if not request.headers.get("authorization"):
            return self._openai_error(401, "Unauthorized", "invalid_api_key")
        denied = self._openai_auth(request)
        if denied is not None:
            return denied
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 32768}
                    for m in ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct")
                ],
            }
        )

    async def slow_ollama_tags(self, request: web.Request):
        """An Ollama server that takes 3 s to list its models (`/slow` as its base URL)."""
        await asyncio.sleep(3)
        return await self.ollama_tags(request)

    async def ollama_tags(self, request: web.Request):
        await self._record(request)
        return web.json_response(
            {
                "models": [
                    {"name": "llama3:8b", "model": "llama3:8b", "size": 4661224676},
                    {"name": "qwen2.5:7b", "model": "qwen2.5:7b", "size": 4683087332},
                ]
            }
        )

    async def azure_chat(self, request: web.Request):
        if not request.query.get("api-version"):
            return self._openai_error(404, "Resource not found", "404")
        return await self.openai_chat(request, protocol="azure_openai", auth_header="api-key")

    async def azure_embeddings(self, request: web.Request):
        return await self.openai_embeddings(request, auth_header="api-key")

    # --- Anthropic ----------------------------------------------------------------------------------
    @staticmethod
    def _anthropic_error(status: int, type_: str, message: str, headers: dict | None = None) -> web.Response:
        return web.json_response(
            {"type": "error", "error": {"type": type_, "message": message}}, status=status, headers=headers
        )

    async def anthropic_count_tokens(self, request: web.Request):
        """Anthropic's token count: {"input_tokens": N}; N = COUNTED_TOKENS, so a test sees Anthropic counted."""
        body = await self._record(request)
        if not request.headers.get("x-api-key", "").startswith("sk-test-"):
            return self._anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not body.get("messages"):
            return self._anthropic_error(400, "invalid_request_error", "messages: Field required")
        return web.json_response({"input_tokens": COUNTED_TOKENS})

    def _anthropic_case(self, request: web.Request, body: dict, model: str) -> web.Response | None:
        """Anthropic's own refusals: the key, the version header, a context window too small."""
        key = request.headers.get("x-api-key", "")
        if not key.startswith("sk-test-"):
            return self._anthropic_error(401, "authentication_error", f"invalid x-api-key {key}")
        if not request.headers.get("anthropic-version"):
            return self._anthropic_error(400, "invalid_request_error", "anthropic-version header is required")
        if _refusal(body, model) == "context":
            return self._anthropic_error(
                400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"
            )
        return None

    async def anthropic_messages(self, request: web.Request):
        body = await self._record(request)
        model = body.get("model", "")
        refused = self._anthropic_case(request, body, model)
        if refused is not None:
            return refused
        if model == "fail-429":
            return self._anthropic_error(
                429,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit",
                {"retry-after": "7"},
            )
        if model in ("fail-500", "fail-503"):
            return self._anthropic_error(
                529 if model == "fail-503" else 500, "overloaded_error", "Overloaded"
            )
        if model == "missing-model":
            return self._anthropic_error(404, "not_found_error", f"model: {model}")
        if model == "fail-400" or not body.get("max_tokens"):
            return self._anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
        if model == "odd-json":  # content blocks that are not objects: an adapter must not choke on them
            return web.json_response(
                {
                    "id": "msg_odd",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [1],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
                }
            )
        if model == "slow":
            await asyncio.sleep(3)
        text = TEXT.format(protocol="anthropic")
        tool = None
        if _anthropic_tool_wanted(body, model):
            tool = {
                "type": "tool_use",
                "id": "toolu_" + uuid.uuid4().hex[:8],
                "name": body["tools"][0]["name"],
                "input": {"city": "Paris"},
            }
        mid = "msg_" + uuid.uuid4().hex[:12]
        usage = self._wire_usage(
            "anthropic", {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
        )
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [tool] if tool else [{"type": "text", "text": text}],
                    "stop_reason": "tool_use" if tool else "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def emit(event: str, data: dict) -> None:
            await response.write(f"event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n")

        await emit(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    # the prompt's counts come first (the output so far is 1), the output's in message_delta
                    "usage": {**usage, "output_tokens": 1},
                },
            },
        )
        if tool:
            await emit(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {
                        "type": "tool_use",
                        "id": tool["id"],
                        "name": tool["name"],
                        "input": {},
                    },
                },
            )
            await emit(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
                },
            )
        else:
            await emit(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for i, piece in enumerate(_pieces(text)):
                if model == "cut" and i == 2:
                    request.transport.close()  # type: ignore[union-attr]
                    return response
                await emit(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        await emit("content_block_stop", {"type": "content_block_stop", "index": 0})
        await emit(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        await emit("message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response

    # --- Gemini -------------------------------------------------------------------------------------
    @staticmethod
    def _google_error(status: int, message: str, state: str, headers: dict | None = None) -> web.Response:
        return web.json_response(
            {"error": {"code": status, "message": message, "status": state}}, status=status, headers=headers
        )

    async def gemini(self, request: web.Request):
        body = await self._record(request)
        key = request.headers.get("x-goog-api-key", "")
        if not key.startswith("sk-test-"):
            return self._google_error(
                400 if not key else 403, f"API key not valid: {key}", "PERMISSION_DENIED"
            )
        model, method = request.match_info["model"], request.match_info["method"]
        if _refusal(body, model) == "context":
            return self._google_error(
                400,
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                "INVALID_ARGUMENT",
            )
        if model == "fail-429":
            return self._google_error(
                429, "Resource has been exhausted", "RESOURCE_EXHAUSTED", {"retry-after": "7"}
            )
        if model in ("fail-500", "fail-503"):
            return self._google_error(int(model[-3:]), "The service is currently unavailable.", "UNAVAILABLE")
        if model == "missing-model":
            return self._google_error(404, f"models/{model} is not found", "NOT_FOUND")
        if model == "fail-400":
            return self._google_error(400, "Invalid value at 'contents'", "INVALID_ARGUMENT")
        if model == "slow":
            await asyncio.sleep(3)
        if method == "batchEmbedContents":
            return web.json_response(
                {"embeddings": [{"values": [0.25] * 8} for _ in body.get("requests", [])]}
            )
        text = TEXT.format(protocol="gemini")
        usage = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": COMPLETION_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        if self.usage_details:
            usage = self.usage_details.gemini()
        tools = body.get("tools") or []
        if model == "tool" and tools:
            name = tools[0]["functionDeclarations"][0]["name"]
            parts = [{"functionCall": {"name": name, "args": {"city": "Paris"}}}]
        else:
            parts = [{"text": text}]
        if method == "generateContent":
            return web.json_response(
                {
                    "candidates": [
                        {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
                    ],
                    "usageMetadata": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunks = [[{"text": p}] for p in _pieces(text)] if "text" in parts[0] else [parts]
        for i, chunk_parts in enumerate(chunks):
            if model == "cut" and i == 2:
                request.transport.close()  # type: ignore[union-attr]
                return response
            last = i == len(chunks) - 1
            payload: dict = {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": chunk_parts},
                        "index": 0,
                        **({"finishReason": "STOP"} if last else {}),
                    }
                ]
            }
            if last:
                payload["usageMetadata"] = usage
            await response.write(b"data: " + orjson.dumps(payload) + b"\r\n\r\n")
        await response.write_eof()
        return response

    # --- Cohere -------------------------------------------------------------------------------------
    async def cohere_chat(self, request: web.Request):
        body = await self._record(request)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer sk-test-"):
            return web.json_response({"message": f"invalid api token {auth[7:]}"}, status=401)
        model = body.get("model", "")
        if model == "fail-429":
            return web.json_response(
                {"message": "You are using a Trial key"}, status=429, headers={"retry-after": "7"}
            )
        if model in ("fail-500", "fail-503"):
            return web.json_response({"message": "internal server error"}, status=int(model[-3:]))
        if model == "missing-model":
            return web.json_response({"message": f"model '{model}' not found"}, status=404)
        if model == "fail-400":
            return web.json_response({"message": "invalid request: messages"}, status=400)
        if model == "slow":
            await asyncio.sleep(3)
        text = TEXT.format(protocol="cohere")
        usage = {
            "billed_units": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
            "tokens": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
        }
        if self.usage_details:
            usage = self.usage_details.cohere()
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": uuid.uuid4().hex,
                    "finish_reason": "COMPLETE",
                    "usage": usage,
                    "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def emit(event: str, data: dict) -> None:
            await response.write(
                f"event: {event}\n".encode() + b"data: " + orjson.dumps({"type": event, **data}) + b"\n\n"
            )

        await emit("message-start", {"id": uuid.uuid4().hex, "delta": {"message": {"role": "assistant"}}})
        for i, piece in enumerate(_pieces(text)):
            if model == "cut" and i == 2:
                request.transport.close()  # type: ignore[union-attr]
                return response
            await emit("content-delta", {"index": 0, "delta": {"message": {"content": {"text": piece}}}})
        await emit("message-end", {"delta": {"finish_reason": "COMPLETE", "usage": usage}})
        await response.write_eof()
        return response

    async def cohere_embed(self, request: web.Request):
        body = await self._record(request)
        texts = body.get("texts") or []
        return web.json_response(
            {
                "id": uuid.uuid4().hex,
                "embeddings": {"float": [[0.5] * 8 for _ in texts]},
                "texts": texts,
                "meta": {"billed_units": {"input_tokens": 3 * len(texts)}},
            }
        )

    # --- Bedrock ------------------------------------------------------------------------------------
    @staticmethod
    def event_frame(event: str, payload: dict, message_type: str = "event") -> bytes:
        """One AWS event-stream message, as botocore's EventStreamBuffer expects it."""
        headers = b""
        kind = ":exception-type" if message_type == "exception" else ":event-type"
        for name, value in (
            (kind, event),
            (":message-type", message_type),
            (":content-type", "application/json"),
        ):
            headers += (
                bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
            )
        body = orjson.dumps(payload)
        total = 12 + len(headers) + len(body) + 4
        prelude = struct.pack(">II", total, len(headers))
        prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
        message = prelude + headers + body
        return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)

    async def bedrock_converse(self, request: web.Request):
        body = await self._record(request)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 Credential=AKIATEST"):
            return web.json_response(
                {"message": "The security token included in the request is invalid."},
                status=403,
                headers={"x-amzn-errortype": "UnrecognizedClientException:"},
            )
        model = request.match_info["model"]
        errors = {
            "fail-429": (429, "ThrottlingException", "Too many requests"),
            "fail-500": (500, "InternalServerException", "Internal error"),
            "fail-503": (503, "ServiceUnavailableException", "Service unavailable"),
            "fail-400": (400, "ValidationException", "Malformed input request"),
            "missing-model": (404, "ResourceNotFoundException", "Could not resolve the foundation model"),
        }
        if model in errors:
            status, error_type, message = errors[model]
            return web.json_response(
                {"message": message},
                status=status,
                headers={"x-amzn-errortype": error_type + ":", "retry-after": "7"},
            )
        if model == "slow":
            await asyncio.sleep(3)
        text = TEXT.format(protocol="bedrock")
        usage = {
            "inputTokens": PROMPT_TOKENS,
            "outputTokens": COMPLETION_TOKENS,
            "totalTokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        if self.usage_details:
            usage = self.usage_details.bedrock()
        tools = ((body.get("toolConfig") or {}).get("tools")) or []
        tool = None
        if model == "tool" and tools:
            tool = {"toolUseId": "tooluse_" + uuid.uuid4().hex[:8], "name": tools[0]["toolSpec"]["name"]}
        if request.path.endswith("/converse"):
            content = [{"toolUse": {**tool, "input": {"city": "Paris"}}}] if tool else [{"text": text}]
            return web.json_response(
                {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": "tool_use" if tool else "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": 5},
                }
            )
        response = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)
        await response.write(self.event_frame("messageStart", {"role": "assistant"}))
        if tool:
            await response.write(
                self.event_frame("contentBlockStart", {"start": {"toolUse": tool}, "contentBlockIndex": 0})
            )
            await response.write(
                self.event_frame(
                    "contentBlockDelta",
                    {"delta": {"toolUse": {"input": '{"city": "Paris"}'}}, "contentBlockIndex": 0},
                )
            )
        else:
            for i, piece in enumerate(_pieces(text)):
                if model == "cut" and i == 2:
                    request.transport.close()  # type: ignore[union-attr]
                    return response
                await response.write(
                    self.event_frame("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0})
                )
        await response.write(self.event_frame("contentBlockStop", {"contentBlockIndex": 0}))
        await response.write(
            self.event_frame("messageStop", {"stopReason": "tool_use" if tool else "end_turn"})
        )
        await response.write(self.event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 5}}))
        await response.write_eof()
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    web.run_app(FakeUpstream().app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
