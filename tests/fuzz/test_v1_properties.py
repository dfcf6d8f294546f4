"""Property-based tests of the `/v1` bodies through the real gateway (uvicorn, Redis, PostgreSQL, the fake
upstream): whatever a client sends, the answer is never a 5xx, every error is OpenAI error JSON, every response
carries `x-request-id`, the tenant's counters are back at rest after each call, and every call answered 200 is
metered exactly once without poisoning the usage queue.

The fake upstream answers every ordinary model name with 200 (only its reserved names such as `fail-500` or
`slow` misbehave, and the strategies never send those), so a 502 or 504 here is a defect too: a body the gateway
let through that the provider could not take, or a failure of our own reported as the provider's.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import counters_at_rest

pytestmark = pytest.mark.django_db(transaction=True)

# Model names the fake upstream answers with something other than a normal 200 (tests/fakes/upstream.py).
FAKE_SPECIAL_MODELS = {
    "fail-429",
    "fail-500",
    "fail-503",
    "fail-400",
    "missing-model",
    "odd-usage",
    "not-an-object",
    "huge-body",
    "long-line",
    "odd-chunk",
    "odd-json",
    "slow",
    "tool",
    "drip",
    "cut",
    "stall",
}
ROLES = ["system", "developer", "user", "assistant", "tool", "function"]

# --- JSON building blocks ---------------------------------------------------------------------------------------

huge_ints = st.sampled_from(
    [2**31 - 1, 2**31, 2**53, 2**63 - 1, 2**63, 2**64, 2**70, 4611686018427387904, -(2**63) - 1, -1, 0]
)
numbers = st.one_of(
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-3, max_value=3),
)
# Unicode of every category, lone surrogates included (sent as `\ud800` escapes, which are not valid JSON text).
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
long_text = st.sampled_from(["x" * 201, "é" * 5000, "\u0000" * 10, "a\r\nb", "😀" * 300, " ", ""])
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text, long_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=12,
)
# Nesting up to 1,000 levels (orjson reads up to 1,024): the checks refuse more than 64 with a 400 naming the field,
# rather than letting the provider's JSON encoder fail later and blame the provider.
deep = st.integers(min_value=50, max_value=1000).map(lambda depth: json.loads("[" * depth + "]" * depth))
hostile = st.one_of(json_values, deep)


def plain_model_name(name: str) -> bool:
    """Not one of the fake upstream's reserved names (control characters, NUL included, are sent: they get a 400)."""
    return name.strip() not in FAKE_SPECIAL_MODELS


# Names the fake upstream answers with 200 (in custom mode the model name goes to the endpoint as it is).
models = st.one_of(
    st.sampled_from(["gpt-fake", "default", "llama3:8b", "gpt-fake "]),
    st.text(alphabet="abcxyz-/._ ", min_size=1, max_size=30).filter(plain_model_name),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(
        lambda m: m.strip() != "" and ":" not in m and plain_model_name(m)
    ),
)
odd_models = st.one_of(
    st.sampled_from(
        [
            "route:nope",
            "route:",
            "openai:gpt-4o-mini",
            "anthropic:claude-sonnet-4.5",
            "custom:",
            ":",
            "m" * 200,
            "m" * 201,
            " ",
            "",
        ]
    ),
    any_text.filter(plain_model_name),
)

# --- plausible chat bodies (everything in them is something a real client sends) --------------------------------

content_parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": any_text}),
        st.fixed_dictionaries(
            {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": any_text})}
        ),
    ),
    max_size=4,
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": any_text,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": any_text, "arguments": any_text}),
        }
    ),
    max_size=2,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(ROLES)},
        optional={
            "content": st.one_of(st.none(), any_text, long_text, content_parts),
            "name": any_text,
            "tool_call_id": any_text,
            "tool_calls": tool_calls,
        },
    ),
    min_size=1,
    max_size=5,
)
tools = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": any_text}, optional={"parameters": json_values, "description": any_text}
            ),
        }
    ),
    max_size=3,
)
CHAT_OPTIONAL = {
    "temperature": st.floats(min_value=0, max_value=2),
    "top_p": st.floats(min_value=0, max_value=1),
    "presence_penalty": st.floats(min_value=-2, max_value=2),
    "frequency_penalty": st.floats(min_value=-2, max_value=2),
    "max_tokens": st.integers(min_value=1, max_value=2**31 - 1),
    "max_completion_tokens": st.integers(min_value=1, max_value=2**31 - 1),
    "n": st.integers(min_value=1, max_value=8),
    "top_logprobs": st.integers(min_value=0, max_value=20),
    "seed": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "stop": st.one_of(any_text, st.lists(any_text, max_size=4)),
    "tools": tools,
    "tool_choice": st.one_of(
        st.sampled_from(["auto", "none", "required"]),
        st.fixed_dictionaries(
            {"type": st.just("function"), "function": st.fixed_dictionaries({"name": any_text})}
        ),
    ),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    "logit_bias": st.dictionaries(any_text, st.integers(min_value=-100, max_value=100), max_size=3),
    "metadata": st.dictionaries(any_text, any_text, max_size=3),
    "user": any_text,
    "logprobs": st.booleans(),
    "parallel_tool_calls": st.booleans(),
}
plausible_chat = st.fixed_dictionaries({"model": models, "messages": messages}, optional=CHAT_OPTIONAL)

# --- plausible embedding bodies ------------------------------------------------------------------------------------

tokens = st.lists(st.integers(min_value=0, max_value=100_000), min_size=1, max_size=5)
EMBEDDING_OPTIONAL = {
    "dimensions": st.integers(min_value=1, max_value=4096),
    "encoding_format": st.sampled_from(["float", "base64"]),
    "user": any_text,
}
plausible_embeddings = st.fixed_dictionaries(
    {
        "model": models,
        "input": st.one_of(
            any_text.filter(bool),
            st.lists(any_text, min_size=1, max_size=5),
            tokens,
            st.lists(tokens, min_size=1, max_size=3),
        ),
    },
    optional=EMBEDDING_OPTIONAL,
)

# --- what a hostile client makes of them ---------------------------------------------------------------------------

# Per field, values of the right type at and past its limits, then anything at all.
EDGES: dict[str, st.SearchStrategy] = {
    "model": odd_models,
    "messages": st.one_of(
        st.just([]),
        st.lists(
            st.fixed_dictionaries(
                {"role": hostile},
                optional={
                    "content": st.one_of(hostile, st.lists(hostile, max_size=3)),
                    "name": hostile,
                    "tool_call_id": hostile,
                    "tool_calls": hostile,
                },
            ),
            min_size=1,
            max_size=3,
        ),
    ),
    "input": st.one_of(
        st.just([]),
        st.just(""),
        st.lists(st.one_of(huge_ints, st.integers()), min_size=1, max_size=4),
        st.lists(st.lists(st.one_of(huge_ints, st.integers()), max_size=3), min_size=1, max_size=3),
        st.lists(hostile, min_size=1, max_size=3),
        st.lists(st.text(max_size=3), min_size=2040, max_size=2050),
    ),
    "tools": st.lists(st.fixed_dictionaries({"type": hostile}, optional={"function": hostile}), max_size=3),
    "stream_options": st.fixed_dictionaries({"include_usage": hostile}),
    "stop": st.lists(hostile, max_size=20),
    "n": st.integers(min_value=-2, max_value=200),
    "top_logprobs": st.integers(min_value=-1, max_value=30),
    "dimensions": st.one_of(huge_ints, st.integers()),
    "logit_bias": st.dictionaries(any_text, hostile, max_size=3),
}
INT_FIELDS = ("max_tokens", "max_completion_tokens", "seed")
NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def _edge(name: str) -> st.SearchStrategy:
    if name in INT_FIELDS:
        return st.one_of(huge_ints, numbers, hostile)
    if name in NUMBER_FIELDS:
        return st.one_of(numbers, hostile)
    return st.one_of(EDGES.get(name, hostile), hostile)


def _hostile_bodies(plausible: st.SearchStrategy, names: list[str]) -> st.SearchStrategy:
    """A plausible body with one field at an edge, with fields of its own added, or with one left out; or anything
    at all for a body. One odd field among plausible ones is what reaches the checks past the first."""
    one_odd = st.tuples(plausible, st.sampled_from(names)).flatmap(
        lambda pair: _edge(pair[1]).map(lambda value: {**pair[0], pair[1]: value})
    )
    extended = st.tuples(
        plausible,
        st.dictionaries(any_text.filter(lambda k: k not in names), json_values, min_size=1, max_size=3),
    ).map(lambda pair: {**pair[0], **pair[1]})
    shortened = plausible.flatmap(
        lambda body: st.sampled_from(sorted(body)).map(
            lambda name: {k: v for k, v in body.items() if k != name}
        )
    )
    return st.one_of(one_odd, extended, shortened, hostile)


CHAT_FIELDS = ["model", "messages", *CHAT_OPTIONAL]
EMBEDDING_FIELDS = ["model", "input", *EMBEDDING_OPTIONAL]
chat_bodies = st.one_of(plausible_chat, _hostile_bodies(plausible_chat, CHAT_FIELDS))
embedding_bodies = st.one_of(plausible_embeddings, _hostile_bodies(plausible_embeddings, EMBEDDING_FIELDS))


# --- the property -----------------------------------------------------------------------------------------------


def _encode(body: Any) -> bytes:
    """Any Python value as the bytes a sloppy client might send: NaN, Infinity and lone surrogates included."""
    return json.dumps(body, allow_nan=True).encode()


def _check_error(response: httpx.Response, body: Any) -> None:
    error = response.json().get("error")
    assert isinstance(error, dict), (response.status_code, response.text, body)
    assert isinstance(error.get("message"), str), (response.text, body)
    assert error["message"], (response.text, body)
    assert isinstance(error.get("type"), str), (response.text, body)
    assert {"param", "code"} <= set(error), (response.text, body)


def _check_stream(response: httpx.Response, body: Any) -> None:
    """A 200 stream is well-formed SSE ending in `[DONE]`, with no error event: the fake upstream answers every
    model name the strategies send, so an error after the first byte would be the gateway's own failure."""
    assert response.headers["content-type"].startswith("text/event-stream"), (response.headers, body)
    events = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert events, (response.text[-500:], body)
    assert events[-1] == "[DONE]", (response.text[-500:], body)
    for event in events[:-1]:
        chunk = json.loads(event)
        assert "error" not in chunk, (chunk, body)


def _exchange(
    client: httpx.Client,
    path: str,
    body: Any,
    tenant_id: int,
    answered: dict[str, Any],
    statuses: Counter[int],
) -> None:
    response = client.post(path, content=_encode(body), headers={"content-type": "application/json"})
    assert response.status_code < 500, (response.status_code, response.text, body)
    assert response.headers.get("x-request-id"), (response.headers, body)
    statuses[response.status_code] += 1
    if response.status_code != 200:
        _check_error(response, body)
    elif response.headers["content-type"].startswith("text/event-stream"):
        _check_stream(response, body)
        answered[response.headers["x-request-id"]] = body
    else:
        result = response.json()
        assert isinstance(result.get("choices" if path.endswith("completions") else "data"), list), (
            result,
            body,
        )
        answered[response.headers["x-request-id"]] = body
    counters_at_rest(tenant_id)


def _metered_exactly_once(answered: dict[str, Any]) -> None:
    """Every call answered 200 left one usage event; nothing waits in the queue or was dead-lettered."""
    from llm.metering import queue as metering
    from llm.models import UsageEvent

    metering.flush()
    dead = [(letter["reason"], letter["event"]) for letter in metering.dead_letters()]
    assert not dead, dead
    assert metering.pending_count() == 0
    counts: dict[str, int] = {}
    for request_id in UsageEvent.objects.unscoped().values_list("request_id", flat=True):
        counts[request_id] = counts.get(request_id, 0) + 1
    wrong = {rid: (counts.get(rid, 0), body) for rid, body in answered.items() if counts.get(rid, 0) != 1}
    assert not wrong, wrong


FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.slow
def test_no_chat_body_gets_a_5xx_or_leaves_a_counter_behind(fuzz_tenant):
    answered: dict[str, Any] = {}
    statuses: Counter[int] = Counter()
    with httpx.Client(
        base_url=fuzz_tenant["url"], timeout=30, headers={"Authorization": f"Bearer {fuzz_tenant['key']}"}
    ) as client:

        @FUZZ
        @given(body=chat_bodies)
        def check(body: Any) -> None:
            _exchange(client, "/v1/chat/completions", body, fuzz_tenant["tenant"].id, answered, statuses)

        check()
    _metered_exactly_once(answered)
    assert statuses[200] >= 10, f"the strategies lost their mix of calls: {statuses}"
    assert statuses[400] >= 10, f"the strategies lost their mix of calls: {statuses}"


@pytest.mark.slow
def test_no_embedding_body_gets_a_5xx_or_leaves_a_counter_behind(fuzz_tenant):
    answered: dict[str, Any] = {}
    statuses: Counter[int] = Counter()
    with httpx.Client(
        base_url=fuzz_tenant["url"], timeout=30, headers={"Authorization": f"Bearer {fuzz_tenant['key']}"}
    ) as client:

        @FUZZ
        @given(body=embedding_bodies)
        def check(body: Any) -> None:
            _exchange(client, "/v1/embeddings", body, fuzz_tenant["tenant"].id, answered, statuses)

        check()
    _metered_exactly_once(answered)
    assert statuses[200] >= 10, f"the strategies lost their mix of calls: {statuses}"
    assert statuses[400] >= 10, f"the strategies lost their mix of calls: {statuses}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b"1",
        b'"x"',
        b"\xff\xfe",
        b'{"model": NaN}',
        b'{"model": "gpt-fake", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    ],
)
def test_bodies_that_are_not_json_objects_are_a_clean_400(fuzz_tenant, raw):
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        response = httpx.post(
            fuzz_tenant["url"] + path,
            content=raw,
            timeout=30,
            headers={"Authorization": f"Bearer {fuzz_tenant['key']}"},
        )
        assert response.status_code == 400, (path, raw[:40], response.text)
        assert response.headers["x-request-id"]
        _check_error(response, raw[:40])
        counters_at_rest(fuzz_tenant["tenant"].id)
