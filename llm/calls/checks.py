"""Checks of `/v1` request bodies: every field a tenant controls is typed and bounded before anything is admitted.

A body that passes is safe for every later step (the reservation, the adapters, the usage event); one that does
not gets a 400 in OpenAI's error format naming the field, and nothing is admitted, called or metered.
"""

from __future__ import annotations

from django.conf import settings

from llm.calls.errors import GatewayError

MAX_MODEL_CHARS = 200
MAX_INT = 2**31 - 1
MAX_MESSAGES = 100_000
MAX_PARTS = 10_000
MAX_TOOLS = 512
MAX_STOP = 16
MAX_INPUTS = 2048
MAX_DEPTH = 64
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(400, message, param=param)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(
            400,
            "`model` is required (e.g. `default`, `anthropic:claude-sonnet-4.5`, `route:chat`).",
            param="model",
            code="missing_model",
        )
    if len(model) > MAX_MODEL_CHARS:
        raise _bad("model", f"`model` is longer than {MAX_MODEL_CHARS} characters.")
    if not model.isprintable():
        raise _bad("model", "`model` contains control characters.")
    return model


def _nesting(body: dict) -> None:
    """No field nests deeper than MAX_DEPTH (what the providers' own JSON encoders refuse would otherwise end as a
    failure blamed on the provider)."""
    for name, value in body.items():
        if not isinstance(value, dict | list):
            continue
        stack = [(value, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise _bad(name, f"`{name}` is nested more than {MAX_DEPTH} levels deep.")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _int_in(body: dict, name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is not None and (not _is_int(value) or not low <= value <= high):
        raise _bad(name, f"`{name}` must be an integer from {low:,} to {high:,}.")


def _number_in(body: dict, name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is not None and (not _is_number(value) or not low <= value <= high):
        raise _bad(name, f"`{name}` must be a number from {low:g} to {high:g}.")


def _content(value: object, param: str) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or len(value) > MAX_PARTS:
        raise _bad(param, f"`{param}` must be a string or a list of content parts.")
    for j, part in enumerate(value):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(
                f"{param}[{j}]", f"`{param}[{j}]` must be an object with a `type` (e.g. text, image_url)."
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _bad(f"{param}[{j}].text", f"`{param}[{j}].text` must be a string.")


def _messages(body: dict) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "`messages` must be a non-empty list.")
    if len(messages) > MAX_MESSAGES:
        raise _bad("messages", f"`messages` has more than {MAX_MESSAGES:,} entries.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise _bad(
                f"messages[{i}].role", f"messages[{i}] needs a `role` of system, user, assistant or tool."
            )
        _content(m.get("content"), f"messages[{i}].content")
        for name in ("name", "tool_call_id"):
            if m.get(name) is not None and not isinstance(m[name], str):
                raise _bad(f"messages[{i}].{name}", f"`messages[{i}].{name}` must be a string.")
        calls = m.get("tool_calls")
        if calls is not None and (not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls)):
            raise _bad(f"messages[{i}].tool_calls", f"`messages[{i}].tool_calls` must be a list of objects.")


def _tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise _bad("tools", f"`tools` must be a list of at most {MAX_TOOLS} tools.")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or not isinstance(tool.get("type"), str)
            or (
                tool["type"] == "function"
                and not (isinstance(function, dict) and isinstance(function.get("name"), str))
            )
        ):
            raise _bad(f"tools[{i}]", f"`tools[{i}]` must be an object with a `type` and a function `name`.")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise _bad("tool_choice", "`tool_choice` must be a string or an object.")


def check_chat(body: dict) -> None:
    check_model(body)
    _nesting(body)
    _messages(body)
    _number_in(body, "temperature", 0, 2)
    _number_in(body, "top_p", 0, 1)
    _number_in(body, "presence_penalty", -2, 2)
    _number_in(body, "frequency_penalty", -2, 2)
    _int_in(body, "max_tokens", 1, MAX_INT)
    _int_in(body, "max_completion_tokens", 1, MAX_INT)
    _int_in(body, "n", 1, settings.GATEWAY_MAX_N)
    _int_in(body, "top_logprobs", 0, 20)
    _int_in(body, "seed", -(2**63), 2**63 - 1)
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("stream", "`stream` must be true or false.")
    options = body.get("stream_options")
    if options is not None and (
        not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool)
    ):
        raise _bad("stream_options", '`stream_options` must be an object like {"include_usage": true}.')
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and len(stop) <= MAX_STOP and all(isinstance(s, str) for s in stop))
    ):
        raise _bad("stop", f"`stop` must be a string or a list of at most {MAX_STOP} strings.")
    _tools(body)
    for name in ("response_format", "logit_bias", "metadata"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise _bad(name, f"`{name}` must be an object.")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("user", "`user` must be a string.")


def check_embeddings(body: dict) -> None:
    check_model(body)
    _nesting(body)
    inp = body.get("input")
    ok = (isinstance(inp, str) and inp != "") or (
        isinstance(inp, list)
        and 0 < len(inp) <= MAX_INPUTS
        and (
            all(isinstance(x, str) for x in inp)
            or all(_is_int(x) and 0 <= x <= MAX_INT for x in inp)
            or all(
                isinstance(x, list) and x and all(_is_int(t) and 0 <= t <= MAX_INT for t in x) for x in inp
            )
        )
    )
    if not ok:
        raise _bad(
            "input",
            f"`input` must be a string, a non-empty list of at most {MAX_INPUTS} strings, or token "
            "arrays (lists of non-negative integers).",
        )
    _int_in(body, "dimensions", 1, 100_000)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _bad("encoding_format", "`encoding_format` must be `float` or `base64`.")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("user", "`user` must be a string.")
