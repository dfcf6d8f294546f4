"""A fake OpenRouter for account linking (OAuth PKCE), over HTTP, with its chat API.

Shapes (https://openrouter.ai/docs/guides/overview/auth/oauth): GET /auth?callback_url=…&code_challenge=…&
code_challenge_method=S256 shows a consent page whose "Authorize" link returns to `callback_url?code=…`; POST
/api/v1/auth/keys {code, code_verifier, code_challenge_method} answers {"key": "…", "user_id": "…"} when SHA-256 of
the verifier (base64url, no padding) is the challenge the code was issued for, once per code, and an OpenRouter
error JSON otherwise. POST /api/v1/chat/completions is FakeUpstream's OpenAI chat (keys it issues start `sk-test-`,
which FakeUpstream accepts), so a linked key can be called.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.upstream import FakeUpstream


class FakeOpenRouter(FakeUpstream):
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.codes: dict[str, dict[str, object]] = {}  # code → {challenge, used}
        self.issued: list[str] = []  # keys handed out, in order

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth"

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/auth", self.consent)
        app.router.add_get("/favicon.ico", self.no_icon)  # the browser asks; a 404 would be a console error
        app.router.add_post("/api/v1/auth/keys", self.exchange)
        app.router.add_post("/api/v1/chat/completions", self.openai_chat)
        return app

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def consent(self, request: web.Request) -> web.Response:
        callback = request.query.get("callback_url", "")
        challenge = request.query.get("code_challenge", "")
        method = request.query.get("code_challenge_method", "")
        if not callback.startswith(("http://", "https://")):
            return web.Response(status=400, text="callback_url is required")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": challenge, "method": method, "used": False}
        joiner = "&" if "?" in callback else "?"
        target = html.escape(f"{callback}{joiner}{urlencode({'code': code})}")
        page = (
            "<!doctype html><title>OpenRouter (fake)</title><h1>Authorize app</h1>"
            f'<a id="authorize" href="{target}">Authorize</a>'
        )
        return web.Response(text=page, content_type="text/html")

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"code": status, "message": message}}, status=status)

    async def exchange(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "Invalid JSON")
        entry = self.codes.get(str(body.get("code")))
        if entry is None or entry["used"]:
            return self._error(400, "Invalid code")
        verifier = str(body.get("code_verifier") or "")
        if entry["method"] == "S256":
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        else:
            expected = verifier
        if body.get("code_challenge_method") != entry["method"] or expected != entry["challenge"]:
            return self._error(403, "Invalid code_verifier")
        entry["used"] = True
        key = "sk-test-" + "or-v1-" + secrets.token_hex(24)
        self.issued.append(key)
        return web.json_response({"key": key, "user_id": "user_fake"})
