"""The shared bench mock (../shared/bench/mock_upstream.py) plus OpenAI's Responses API (`POST /v1/responses`,
JSON and the Responses SSE events), so `/v1/responses` can be measured against LiteLLM over the same mock.

Loaded in place of the shared file by scripts/bench.sh (BENCH_ORIG_DIR names the original); everything else is the
shared mock unchanged. Shapes: the `openai` SDK's Response and ResponseStreamEvent types."""

import importlib.util
import json
import os
import sys
import time
from typing import Any

_ORIG = os.path.join(os.environ["BENCH_ORIG_DIR"], "mock_upstream.py")
_spec = importlib.util.spec_from_file_location("shared_mock_upstream", _ORIG)
mock: Any = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["shared_mock_upstream"] = mock
_spec.loader.exec_module(mock)  # type: ignore[union-attr]
_tokens = mock._tokens


def _response(r, req, body_len, status, text, n):
    pt = r.prompt_tokens(body_len)
    done = status == "completed"
    usage = {
        "input_tokens": pt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": n,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": pt + n,
    }
    output = [_message(text, "completed")] if done else []
    return {
        "id": r.next_id("resp_mock"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": str(req.get("model", "gpt-4o-mini")),
        "output": output,
        "usage": usage if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}},
    }


def _message(text, status):
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": "msg_mock", "status": status, "role": "assistant", "content": content}


def responses(self, req, body_len):
    n = self.completion_tokens(req)
    text = json.loads(self.text(n))  # the shared renderer gives it JSON-encoded
    return json.dumps(_response(self, req, body_len, "completed", text, n)).encode()


def responses_stream_events(self, req, body_len):
    n = self.completion_tokens(req)
    seq = iter(range(1_000_000))

    def e(kind, **fields):
        data = json.dumps({"type": kind, "sequence_number": next(seq), **fields})
        return f"event: {kind}\ndata: {data}\n\n".encode()

    start = _response(self, req, body_len, "in_progress", "", 0)
    at = {"item_id": "msg_mock", "output_index": 0, "content_index": 0}
    ev = [
        e("response.created", response=start),
        e("response.in_progress", response=start),
        e("response.output_item.added", output_index=0, item=_message("", "in_progress")),
        e("response.content_part.added", **at, part={"type": "output_text", "text": "", "annotations": []}),
    ]
    pieces = list(_tokens(n))
    ev += [e("response.output_text.delta", **at, delta=tok, logprobs=[]) for tok in pieces]
    text = "".join(pieces)
    ev.append(e("response.output_text.done", **at, text=text, logprobs=[]))
    ev.append(
        e("response.content_part.done", **at, part={"type": "output_text", "text": text, "annotations": []})
    )
    ev.append(e("response.output_item.done", output_index=0, item=_message(text, "completed")))
    ev.append(e("response.completed", response=_response(self, req, body_len, "completed", text, n)))
    return ev


mock.Renderer.responses = responses
mock.Renderer.responses_stream_events = responses_stream_events
mock.ROUTES = (*mock.ROUTES, "/v1/responses")
_handle = mock.App.handle


def handle(self, proto, method, target, headers, body, keep_alive):
    path = target.split("?", 1)[0]
    if path in ("/v1/responses", "/responses") and method == "POST" and self._authorized(headers):
        self.stats.hit("/v1/responses")
        req = json.loads(body) if body else {}
        if req.get("stream"):
            proto.stream(
                self.r.responses_stream_events(req, len(body)), keep_alive, self.delay, self.interval
            )
        else:
            proto.respond(200, self.r.responses(req, len(body)), keep_alive, self.delay)
        return
    _handle(self, proto, method, target, headers, body, keep_alive)


mock.App.handle = handle

if __name__ == "__main__":
    mock.main()
