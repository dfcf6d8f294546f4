"""Anthropic's Messages API as an ingress (`POST /v1/messages`, what the Anthropic SDK and Claude Code send).

A Messages request becomes one chat body for the router (the same admission, failover, metering and caps as
`/v1/chat/completions`), and the answer goes back in Anthropic's shape. Where the target speaks Anthropic natively
the original request travels with it (`_anthropic`), so `cache_control`, `thinking`, images, documents and tool use
reach Anthropic untouched and its answer comes back as it was sent; any other target (OpenAI-compatible, Gemini,
Bedrock, a custom endpoint) gets the translation through OpenAI's shape, tool calls and streaming included.

Shapes (Anthropic's API reference): request {model, max_tokens, system (string or text blocks), messages[{role,
content: string | [text | image | document | tool_use | tool_result | thinking]}], temperature, top_p, top_k,
stop_sequences, tools[{name, description, input_schema}], tool_choice {type: auto|any|tool|none}, metadata,
thinking, stream}; response {id, type: message, role, model, content[text | tool_use], stop_reason, stop_sequence,
usage{input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens}}; SSE events
message_start, content_block_start, content_block_delta (text_delta | input_json_delta), content_block_stop,
message_delta, message_stop, ping, error; errors {"type": "error", "error": {"type", "message"}}.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from llm.calls.errors import GatewayError
from llm.config import catalog
from llm.providers.base import MESSAGES_PASSTHROUGH, NATIVE_MESSAGE

MAX_BETA_CHARS = 1000
MAX_MODEL_CHARS = 200

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_DATED = re.compile(r"-(\d{8}|latest)$")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(exc: GatewayError) -> bytes:
    """A gateway error in Anthropic's error JSON (what the SDK raises as APIStatusError subclasses)."""
    kind = _ERROR_TYPES.get(exc.status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": exc.message}})


def _bad(message: str) -> GatewayError:
    return GatewayError(400, message, param=None)


# --- request ---------------------------------------------------------------------------------------------


def requested_model(request: dict) -> str:
    model = request.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_CHARS:
        raise _bad("model: required (e.g. claude-sonnet-4-5, default or route:NAME).")
    return model.strip()


def is_anthropic_name(model: str) -> bool:
    """An Anthropic model name (`claude-sonnet-4-5-20250929`) rather than one of the gateway's ids."""
    return model != "default" and ":" not in model


def gateway_model(model: str) -> str:
    """The gateway's model for what an Anthropic client names: its own ids as they are (`default`, `route:x`,
    `anthropic:claude-sonnet-4.5`), an Anthropic model name (`claude-sonnet-4-5-20250929`, Claude Code's) as the
    catalog entry whose native id it is (synchronous: it may read the catalog)."""
    if not is_anthropic_name(model):
        return model
    bare = _DATED.sub("", model)
    snapshot = catalog.get_catalog()
    for m in snapshot.models.values():
        native = (m.native_model_id or "").strip()
        if m.provider == "anthropic" and native and (native == model or _DATED.sub("", native) == bare):
            return m.id
    dotted = re.sub(r"-(\d+)-(\d+)$", r"-\1.\2", bare)  # claude-sonnet-4-5 → claude-sonnet-4.5
    return f"anthropic:{dotted}"


def to_chat(request: dict, *, model: str, beta: str = "", counting: bool = False) -> dict:
    """The chat body the router takes for a Messages request (`model`: the gateway's, see `gateway_model`); the
    original rides along for Anthropic targets. A token count (`counting`) needs no max_tokens."""
    if not isinstance(request.get("messages"), list) or not request["messages"]:
        raise _bad("messages: a non-empty list of {role, content} is required.")
    max_tokens = request.get("max_tokens", 1 if counting else None)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad("max_tokens: required, an integer of at least 1.")
    body: dict[str, Any] = {
        "model": model,
        "messages": _system(request.get("system")) + _messages(request["messages"]),
        "max_tokens": max_tokens,
    }
    for name in ("temperature", "top_p"):
        if request.get(name) is not None:
            body[name] = request[name]
    if request.get("stop_sequences") is not None:
        body["stop"] = request["stop_sequences"]
    if request.get("stream") is not None:
        body["stream"] = request["stream"]
    if request.get("tools"):
        body["tools"] = _tools(request["tools"])
        choice = _tool_choice(request.get("tool_choice"))
        if choice is not None:
            body["tool_choice"] = choice
    user = (
        (request.get("metadata") or {}).get("user_id") if isinstance(request.get("metadata"), dict) else None
    )
    if isinstance(user, str):
        body["user"] = user
    body[MESSAGES_PASSTHROUGH] = {"request": request, "beta": beta[:MAX_BETA_CHARS]}
    return body


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _system(system: object) -> list[dict]:
    if system is None:
        return []
    if not isinstance(system, str | list):
        raise _bad("system: a string or a list of text blocks.")
    text = _text_of(system)
    return [{"role": "system", "content": text}] if text else []


def _image(block: dict) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        source = {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    else:
        url = str(source.get("url", ""))
    return {"type": "image_url", "image_url": {"url": url}}


def _messages(messages: list) -> list[dict]:
    chat: list[dict] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: user or assistant.")
        content = m.get("content")
        if isinstance(content, str):
            chat.append({"role": m["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise _bad(f"messages.{i}.content: a string or a list of content blocks.")
        if m["role"] == "assistant":
            chat.append(_assistant(content))
        else:
            chat.extend(_user(content))
    return chat


def _assistant(blocks: list) -> dict:
    text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    calls = [
        {
            "id": b.get("id", ""),
            "type": "function",
            "function": {"name": b.get("name", ""), "arguments": orjson.dumps(b.get("input") or {}).decode()},
        }
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list) -> list[dict]:
    """A user turn: tool results first (OpenAI wants them right after the assistant's calls), then the rest."""
    out: list[dict] = []
    parts: list[dict] = []
    for b in blocks:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind == "tool_result":
            text = _text_of(b.get("content"))
            if b.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")), "content": text})
        elif kind == "text":
            parts.append({"type": "text", "text": str(b.get("text", ""))})
        elif kind == "image":
            parts.append(_image(b))
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _tools(tools: object) -> list[dict]:
    if not isinstance(tools, list):
        raise _bad("tools: a list of {name, description, input_schema}.")
    out = []
    for t in tools:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise _bad("tools: each tool needs a name.")
        if t.get("type") not in (None, "custom"):
            continue  # Anthropic's server tools (web search, bash…) have no OpenAI equivalent; Anthropic gets them
        out.append(
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description") or "",
                    "parameters": t.get("input_schema") or {"type": "object", "properties": {}},
                },
            }
        )
    return out


def _tool_choice(choice: object) -> object:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "any":
        return "required"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind in ("auto", "none"):
        return kind
    return None


# --- reply -----------------------------------------------------------------------------------------------


def anthropic_usage(usage: object) -> dict[str, int]:
    """OpenAI's usage block as Anthropic counts it: input_tokens exclude the cached ones, reported apart."""
    u = usage if isinstance(usage, dict) else {}
    details = u.get("prompt_tokens_details")
    if not isinstance(details, dict):
        details = {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or details.get("cache_creation_tokens") or 0)
    prompt = int(u.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(prompt - cached - written, 0),
        "output_tokens": int(u.get("completion_tokens") or 0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    }


def from_chat(result: dict, requested: str) -> dict:
    """The router's answer as an Anthropic message (the native one when Anthropic served it)."""
    native = result.get(NATIVE_MESSAGE)
    if isinstance(native, dict):
        return native
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name", ""),
                "input": arguments if isinstance(arguments, dict) else {"value": arguments},
            }
        )
    return {
        "id": _message_id(result.get("id")),
        "type": "message",
        "role": "assistant",
        "model": requested,
        "content": content,
        "stop_reason": _STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(result.get("usage")),
    }


def _message_id(upstream: object) -> str:
    return (
        upstream if isinstance(upstream, str) and upstream.startswith("msg_") else f"msg_{uuid.uuid4().hex}"
    )


# --- stream ----------------------------------------------------------------------------------------------

Event = tuple[str, dict]


class StreamTranslator:
    """OpenAI chunks in, Anthropic SSE events out: one content block per text run or tool call, in order."""

    def __init__(self, requested: str) -> None:
        self.requested = requested
        self.started = False
        self.index = -1  # the open content block, -1: none
        self.open_kind = ""  # "text" or "tool"
        self.tools: dict[int, int] = {}  # OpenAI tool call index → content block index
        self.stop_reason = "end_turn"
        self.usage: dict[str, int] | None = None
        self.id = f"msg_{uuid.uuid4().hex}"

    def start(self) -> list[Event]:
        self.started = True
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.requested,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def feed(self, chunk: dict) -> list[Event]:
        events = [] if self.started else self.start()
        if chunk.get("usage"):
            self.usage = anthropic_usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") or ():
                events += self._tool(call)
            if choice.get("finish_reason"):
                self.stop_reason = _STOP.get(choice["finish_reason"], "end_turn")
        return events

    def _close(self) -> list[Event]:
        if self.index < 0 or not self.open_kind:
            return []
        self.open_kind = ""
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open_kind != "text":
            events += self._close()
            self.index += 1
            self.open_kind = "text"
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self.index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
        delta = {"type": "text_delta", "text": text}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})
        )
        return events

    def _tool(self, call: dict) -> list[Event]:
        events: list[Event] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self.tools:
            events += self._close()
            self.index += 1
            self.open_kind = "tool"
            self.tools[position] = self.index
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name") or "",
                "input": {},
            }
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": self.index, "content_block": block},
                )
            )
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": self.tools[position], "delta": delta},
                )
            )
        return events

    def finish(self) -> list[Event]:
        events = [] if self.started else self.start()
        events += self._close()
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def sse(event: str, payload: dict | bytes) -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def error_event(exc: GatewayError) -> bytes:
    return sse("error", error_body(exc))
