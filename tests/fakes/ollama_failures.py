"""A local stand-in for an Ollama server that fails the way a real one does: a model never pulled (404 with
Ollama's own JSON), not enough memory to load it (500), or a slow first load (no answer for a while)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NOT_PULLED = "not_pulled"
OUT_OF_MEMORY = "out_of_memory"
SLOW = "slow"


class FailingOllama:
    def __init__(self) -> None:
        self.failure = NOT_PULLED
        self.delay = 2.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _answer(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._answer(200, {"models": [{"name": "llama3.2:1b"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                model = json.loads(self.rfile.read(length) or b"{}").get("model", "")
                if owner.failure == NOT_PULLED:
                    self._answer(404, {"error": f'model "{model}" not found, try pulling it first'})
                elif owner.failure == OUT_OF_MEMORY:
                    self._answer(
                        500,
                        {"error": "model requires more system memory (12.3 GiB) than is available (4.1 GiB)"},
                    )
                else:
                    time.sleep(owner.delay)
                    self._answer(500, {"error": "late"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="failing-ollama")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FailingOllama:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
