"""The shared load generator (../shared/bench/overhead.py) plus two scenarios: `responses` and `responses-stream`
(OpenAI's Responses API, `POST {base}/responses`; first token = the first response.output_text.delta).

Loaded in place of the shared file by scripts/bench.sh (BENCH_ORIG_DIR names the original)."""

import importlib.util
import json
import os
import sys
from typing import Any

_ORIG = os.path.join(os.environ["BENCH_ORIG_DIR"], "overhead.py")
_spec = importlib.util.spec_from_file_location("shared_overhead", _ORIG)
oh: Any = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["shared_overhead"] = oh
_spec.loader.exec_module(oh)  # type: ignore[union-attr]

_request, _validate = oh.scenario_request, oh.validate


def _first_token_responses(obj):
    return obj.get("type") == "response.output_text.delta"


def scenario_request(name, model, prompt_chars, max_tokens):
    if name in ("responses", "responses-stream"):
        body = {
            "model": model,
            "instructions": "You are a helpful assistant.",
            "input": oh._prompt(prompt_chars),
            "max_output_tokens": max_tokens,
            "temperature": 0.2,
            "store": False,
        }
        if name == "responses-stream":
            body["stream"] = True
            return "/responses", body, True, _first_token_responses, "openai"
        return "/responses", body, False, None, "openai"
    return _request(name, model, prompt_chars, max_tokens)


def validate(name, resp, expect_usage=True):
    if name not in ("responses", "responses-stream"):
        return _validate(name, resp, expect_usage)
    if resp.status != 200:
        raise oh.HttpError(f"HTTP {resp.status}: {(resp.body or b'')[:300]!r}")
    body = resp.body or b""
    if name == "responses":
        obj = json.loads(body)
        if not obj.get("output") or (expect_usage and not obj.get("usage")):
            raise oh.HttpError(f"no output or usage: {body[:300]!r}")
        return
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    datas = [line[5:].strip() for line in lines if line.startswith(b"data:")]
    if not datas or not resp.t_first:
        raise oh.HttpError(f"stream had no text: {body[:300]!r}")
    events = [d for d in datas if d != b"[DONE]"]  # some servers end the stream as Chat Completions do
    if not events or json.loads(events[-1]).get("type") != "response.completed":
        raise oh.HttpError("responses stream did not end with response.completed")


oh.scenario_request = scenario_request
oh.validate = validate
oh.SCENARIO_ROUTE.update({"responses": "/v1/responses", "responses-stream": "/v1/responses"})

if __name__ == "__main__":
    sys.exit(oh.main())
