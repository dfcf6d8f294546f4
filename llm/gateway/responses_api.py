"""OpenAI's Responses API as an ingress (`/v1/responses`), bridged onto the router's chat calls.

A Responses request becomes one chat body (the same admission, failover, metering and caps as
`/v1/chat/completions`, to any provider), and the answer goes back as a Response object or as the Responses
stream events. `previous_response_id` continues a stored response's conversation; `store` (default true) keeps the
answer for GET, DELETE and its input items (`llm.gateway.responses_store`).

Shapes (OpenAI's API reference and the `openai` SDK's types): request {model, input: string | items, instructions,
tools[{type: function, name, description, parameters, strict}], tool_choice, stream, previous_response_id, store,
max_output_tokens, temperature, top_p, text{format}, parallel_tool_calls, metadata, user}; items: message {role,
content: string | [input_text | input_image | output_text]}, function_call {call_id, name, arguments},
function_call_output {call_id, output}; Response {id, object: response, created_at, status, model, output[message
{content[output_text]} | function_call], usage{input_tokens, input_tokens_details{cached_tokens}, output_tokens,
output_tokens_details{reasoning_tokens}, total_tokens}, …}; stream events response.created, response.in_progress,
response.output_item.added, response.content_part.added, response.output_text.delta / .done,
response.content_part.done, response.function_call_arguments.delta / .done, response.output_item.done,
response.completed, each with a sequence_number.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from llm.calls.errors import GatewayError
from llm.providers.base import NATIVE_RESPONSE

MAX_ITEMS = 100_000
ECHOED = (
    "instructions",
    "metadata",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_output_tokens",
    "user",
)


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(400, message, param=param)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# --- request ---------------------------------------------------------------------------------------------


def input_items(request: dict) -> list[dict]:
    """The request's input as items (a string is one user message)."""
    value = request.get("input")
    if isinstance(value, str):
        return [_normalised({"type": "message", "role": "user", "content": value})]
    if not isinstance(value, list) or not value:
        raise _bad("input", "`input` must be a string or a non-empty list of items.")
    if len(value) > MAX_ITEMS:
        raise _bad("input", f"`input` has more than {MAX_ITEMS:,} items.")
    items = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"input[{i}]", f"`input[{i}]` must be an object.")
        items.append(
            _normalised({"type": "message", **item} if "type" not in item and "role" in item else item)
        )
    return items


def _normalised(item: dict) -> dict:
    """An item as OpenAI lists it back: a message's text content as parts (input_text, or output_text for the
    assistant's)."""
    if item.get("type") != "message" or not isinstance(item.get("content"), str):
        return dict(item)
    kind = "output_text" if item.get("role") == "assistant" else "input_text"
    return {**item, "content": [{"type": kind, "text": item["content"]}]}


def _part(part: Any, param: str) -> dict:
    if not isinstance(part, dict):
        raise _bad(param, f"`{param}` must be an object.")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _bad(param, f"`{param}`: only images given by `image_url` are supported.")
        return {"type": "image_url", "image_url": {"url": url}}
    raise _bad(param, f"`{param}`: content of type {str(kind)[:40]} is not supported by this gateway.")


def _message(item: dict, param: str) -> dict:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _bad(f"{param}.role", f"`{param}.role` must be user, assistant, system or developer.")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _bad(f"{param}.content", f"`{param}.content` must be a string or a list of parts.")
    parts = [_part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]
    if role != "user" or all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def items_to_messages(items: list[dict]) -> list[dict]:
    """Responses items as chat messages: function calls join one assistant message, outputs become tool ones."""
    messages: list[dict] = []
    for i, item in enumerate(items):
        kind = item.get("type")
        param = f"input[{i}]"
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id", "")),
                "type": "function",
                "function": {"name": str(item.get("name", "")), "arguments": str(item.get("arguments", ""))},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")), "content": text})
        elif kind == "reasoning":
            continue  # a model's reasoning summary: nothing another model can take as input
        else:
            raise _bad(f"{param}.type", f"`{param}`: items of type {str(kind)[:40]} are not supported.")
    return messages


def _tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise _bad("tools", "`tools` must be a list.")
    out = []
    for i, tool in enumerate(tools):
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(tool.get("name"), str)
        ):
            raise _bad(
                f"tools[{i}]",
                f"`tools[{i}]`: only function tools ({{type: function, name, parameters}}) are supported.",
            )
        function = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in (None, "auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice", "`tool_choice` must be auto, none, required or {type: function, name}.")


def _response_format(text: Any) -> dict | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format", "`text.format.type` must be text, json_object or json_schema.")


def to_chat(request: dict, items: list[dict], history: list[dict]) -> dict:
    """The chat body for a Responses request: instructions, the conversation so far, then this input."""
    model = request.get("model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "`model` is required (e.g. `default`, `openai:gpt-5-mini`).", param="model")
    instructions = request.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("instructions", "`instructions` must be a string.")
    messages = ([{"role": "system", "content": instructions}] if instructions else []) + history
    body: dict[str, Any] = {"model": model, "messages": messages + items_to_messages(items)}
    if request.get("max_output_tokens") is not None:
        body["max_tokens"] = request["max_output_tokens"]
    for name in ("temperature", "top_p", "user", "stream", "parallel_tool_calls"):
        if request.get(name) is not None:
            body[name] = request[name]
    if request.get("tools"):
        body["tools"] = _tools(request["tools"])
        choice = _tool_choice(request.get("tool_choice"))
        if choice is not None:
            body["tool_choice"] = choice
    response_format = _response_format(request.get("text"))
    if response_format is not None:
        body["response_format"] = response_format
    return body


def messages_to_items(messages: list[dict]) -> list[dict]:
    """Chat messages (a stored conversation) as Responses input items, for a target that speaks Responses."""
    items: list[dict] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m.get("tool_call_id", ""),
                    "output": str(content or ""),
                }
            )
            continue
        if content:
            kind = "output_text" if role == "assistant" else "input_text"
            parts = (
                [{"type": kind, "text": content}]
                if isinstance(content, str)
                else [_item_part(p, kind) for p in content]
            )
            items.append({"type": "message", "role": role, "content": parts})
        for call in m.get("tool_calls") or ():
            function = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id", ""),
                    "name": function.get("name", ""),
                    "arguments": function.get("arguments", ""),
                }
            )
    return items


def _item_part(part: dict, kind: str) -> dict:
    if part.get("type") == "image_url":
        return {"type": "input_image", "image_url": (part.get("image_url") or {}).get("url", "")}
    return {"type": kind, "text": str(part.get("text", ""))}


def assistant_of(output: list) -> dict:
    """The assistant message a native Response's output continues the conversation with."""
    text = "".join(
        str(part.get("text", ""))
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )
    calls = [
        {
            "id": item.get("call_id", ""),
            "type": "function",
            "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
        }
        for item in output
        if isinstance(item, dict) and item.get("type") == "function_call"
    ]
    assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        assistant["tool_calls"] = calls
    return assistant


def passthrough(request: dict, items: list[dict], history: list[dict]) -> dict:
    """What a target on OpenAI's own API gets instead of the translation: the request, the whole input as items."""
    return {"request": request, "input": messages_to_items(history) + [_without_ids(i) for i in items]}


def _without_ids(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != "id"}


def ours(response_id: str, request: dict, native: dict) -> dict:
    """A Response as OpenAI sent it, under the gateway's id and with what the gateway keeps (chaining, storage)."""
    body = {
        **native,
        "id": response_id,
        "previous_response_id": request.get("previous_response_id"),
        "store": request.get("store", True) is not False,
    }
    for name in ECHOED:  # OpenAI echoes the request's settings; where an answer leaves one out, the request's
        if body.get(name) is None and request.get(name) is not None:
            body[name] = request[name]
    return body


# --- reply -----------------------------------------------------------------------------------------------


def usage_of(usage: Any) -> dict:
    u = usage if isinstance(usage, dict) else {}
    prompt_details = u.get("prompt_tokens_details")
    completion_details = u.get("completion_tokens_details")
    cached = int((prompt_details or {}).get("cached_tokens") or 0) if isinstance(prompt_details, dict) else 0
    reasoning = (
        int((completion_details or {}).get("reasoning_tokens") or 0)
        if isinstance(completion_details, dict)
        else 0
    )
    prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def output_items(message: dict) -> list[dict]:
    """An assistant chat message as Responses output items: its text, then its function calls."""
    items: list[dict] = []
    if message.get("content"):
        items.append(text_item(new_id("msg"), str(message["content"]), "completed"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        items.append(
            function_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                str(function.get("name", "")),
                str(function.get("arguments", "")),
                "completed",
            )
        )
    return items


def text_item(item_id: str, text: str, status: str) -> dict:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        if status == "completed"
        else []
    )
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def function_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_object(
    response_id: str,
    request: dict,
    *,
    created_at: int,
    output: list[dict],
    usage: dict | None,
    finish_reason: str | None,
    status: str = "completed",
) -> dict:
    if status == "completed" and finish_reason == "length":
        status = "incomplete"
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "model": request.get("model"),
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "previous_response_id": request.get("previous_response_id"),
        "tools": request.get("tools") or [],
        "tool_choice": request.get("tool_choice") or "auto",
        "text": request.get("text") or {"format": {"type": "text"}},
        "truncation": "disabled",
        "store": request.get("store", True) is not False,
    }
    for name in ECHOED:
        body[name] = request.get(name)
    if body["parallel_tool_calls"] is None:
        body["parallel_tool_calls"] = True
    if status in ("completed", "incomplete"):
        body["completed_at"] = int(time.time())
    return body


def from_chat(response_id: str, request: dict, result: dict, created_at: int) -> tuple[dict, dict]:
    """(the Response object, the assistant message the conversation continues with) of a chat answer (the native
    Response when OpenAI's own API served it)."""
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    assistant = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        assistant["tool_calls"] = message["tool_calls"]
    native = result.get(NATIVE_RESPONSE)
    if isinstance(native, dict):
        return ours(response_id, request, native), assistant
    body = response_object(
        response_id,
        request,
        created_at=created_at,
        output=output_items(message),
        usage=usage_of(result.get("usage")),
        finish_reason=choice.get("finish_reason"),
    )
    return body, assistant


# --- stream ----------------------------------------------------------------------------------------------

Event = tuple[str, dict]


class StreamTranslator:
    """Chat chunks in, Responses stream events out; keeps what the final `response.completed` carries."""

    def __init__(self, response_id: str, request: dict, created_at: int) -> None:
        self.response_id = response_id
        self.request = request
        self.created_at = created_at
        self.sequence = 0
        self.output: list[dict] = []  # items as they are built (text item: content accumulates)
        self.text_index = -1  # output index of the open text item, -1: none
        self.text = ""
        self.calls: dict[int, int] = {}  # chat tool call index → output index
        self.usage: dict | None = None
        self.finish_reason: str | None = None

    def _event(self, kind: str, **fields: Any) -> Event:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return kind, payload

    def _snapshot(self, status: str) -> dict:
        return response_object(
            self.response_id,
            self.request,
            created_at=self.created_at,
            output=self.output,
            usage=self.usage if status != "in_progress" else None,
            finish_reason=self.finish_reason,
            status=status,
        )

    def start(self) -> list[Event]:
        snapshot = self._snapshot("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: dict) -> list[Event]:
        events: list[Event] = []
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text(str(delta["content"]))
            for call in delta.get("tool_calls") or ():
                events += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _text(self, piece: str) -> list[Event]:
        events: list[Event] = []
        if self.text_index < 0:
            self.text_index = len(self.output)
            item = text_item(new_id("msg"), "", "in_progress")
            self.output.append(item)
            events.append(
                self._event("response.output_item.added", output_index=self.text_index, item=dict(item))
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self.text_index,
                    content_index=0,
                    part=part,
                )
            )
        self.text += piece
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=self.output[self.text_index]["id"],
                output_index=self.text_index,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        )
        return events

    def _call(self, call: dict) -> list[Event]:
        events: list[Event] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self.calls:
            self.calls[position] = len(self.output)
            item = function_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                str(function.get("name") or ""),
                "",
                "in_progress",
            )
            self.output.append(item)
            events.append(
                self._event("response.output_item.added", output_index=self.calls[position], item=dict(item))
            )
        index = self.calls[position]
        arguments = function.get("arguments")
        if arguments:
            self.output[index]["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=self.output[index]["id"],
                    output_index=index,
                    delta=arguments,
                )
            )
        return events

    def finish(self) -> tuple[list[Event], dict, dict]:
        """The closing events, the final Response and the assistant message the conversation continues with."""
        events: list[Event] = []
        for index, item in enumerate(self.output):
            if item["type"] == "message":
                done = text_item(item["id"], self.text, "completed")
                self.output[index] = done
                part = done["content"][0]
                common = {"item_id": item["id"], "output_index": index, "content_index": 0}
                events.append(self._event("response.output_text.done", **common, text=self.text, logprobs=[]))
                events.append(self._event("response.content_part.done", **common, part=part))
            else:
                item["status"] = "completed"
                events.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
            events.append(
                self._event("response.output_item.done", output_index=index, item=self.output[index])
            )
        final = self._snapshot("completed")
        events.append(self._event("response.completed", response=final))
        assistant: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        calls = [
            {
                "id": i["call_id"],
                "type": "function",
                "function": {"name": i["name"], "arguments": i["arguments"]},
            }
            for i in self.output
            if i["type"] == "function_call"
        ]
        if calls:
            assistant["tool_calls"] = calls
        return events, final, assistant

    def failed(self, exc: GatewayError) -> list[Event]:
        snapshot = self._snapshot("failed")
        snapshot["error"] = {"code": exc.code or exc.type, "message": exc.message}
        return [self._event("response.failed", response=snapshot)]


def sse(event: str, payload: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
