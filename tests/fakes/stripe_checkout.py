"""Stripe Checkout in front of localstripe, for tests that walk a purchase end to end in a browser.

localstripe has no Checkout. This server forwards every Stripe API request to localstripe unchanged and answers
`POST /v1/checkout/sessions` itself, in Stripe's documented shape (https://docs.stripe.com/api/checkout/sessions/
create: `id`, `object`, `mode`, `customer`, `metadata`, `url`, `success_url`, `cancel_url`, `status`), with a `url`
on this server. That page stands in for Stripe's hosted payment page: paying there does what Stripe does when a
customer completes a subscription Checkout, in Stripe's order:

1. the card (Stripe's test card 4242…) is attached to the customer and made its default;
2. the subscription is created with the session's line items (localstripe, several items: localstripe_items.py),
   carrying `subscription_data.metadata`;
3. `checkout.session.completed` is sent to the app's webhook, signed like Stripe (`Stripe-Signature: t=…,v1=…`,
   HMAC-SHA256 of "{t}.{payload}"), with the session's `metadata`, `customer` and the new `subscription`;
4. the browser is sent to `success_url` (303); "Cancel" goes to `cancel_url` and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx

_FORWARDED_HEADERS = ("authorization", "content-type", "idempotency-key", "stripe-version", "user-agent")


def _nested(form: dict[str, list[str]], prefix: str) -> dict[str, str]:
    """`metadata[tenant]=acme` → {"tenant": "acme"} for one bracketed prefix of a form body."""
    out = {}
    for key, values in form.items():
        if key.startswith(prefix + "[") and key.endswith("]") and key.count("[") == 1:
            out[key[len(prefix) + 1 : -1]] = values[0]
    return out


def _line_items(form: dict[str, list[str]]) -> list[tuple[str, int]]:
    items = []
    n = 0
    while f"line_items[{n}][price]" in form:
        items.append(
            (form[f"line_items[{n}][price]"][0], int(form.get(f"line_items[{n}][quantity]", ["1"])[0]))
        )
        n += 1
    return items


class CheckoutFake:
    def __init__(self, *, upstream: str, webhook_url: str, webhook_secret: str):
        self.upstream = upstream.rstrip("/")
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.sessions: dict[str, dict[str, Any]] = {}
        self.paid: list[str] = []  # session ids, in the order they were paid
        self.webhook_answers: list[int] = []
        self.api_key = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(
                self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
            ):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str, body: bytes = b"") -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED_HEADERS}
                answer = httpx.request(
                    method, outer.upstream + self.path, content=body, headers=headers, timeout=30
                )
                self._send(
                    answer.status_code, answer.content, answer.headers.get("content-type", "application/json")
                )

            def do_GET(self) -> None:
                if self.path.startswith("/c/pay/"):
                    return self._send(
                        200, outer.pay_page(self.path.rsplit("/", 1)[1]), "text/html; charset=utf-8"
                    )
                return self._forward("GET")

            def do_DELETE(self) -> None:
                return self._forward("DELETE")

            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/v1/checkout/sessions":
                    outer.api_key = self.headers.get("Authorization", "")
                    session = outer.create_session(parse_qs(body.decode()))
                    return self._send(200, json.dumps(session).encode(), "application/json")
                if self.path.startswith("/c/pay/"):
                    return self._send(
                        303, b"", "text/plain", {"Location": outer.pay(self.path.rsplit("/", 1)[1])}
                    )
                return self._forward("POST", body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()

    # --- Checkout ------------------------------------------------------------------------------------

    def create_session(self, form: dict[str, list[str]]) -> dict[str, Any]:
        session_id = "cs_test_" + uuid.uuid4().hex[:24]
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": form.get("mode", ["payment"])[0],
            "status": "open",
            "customer": form.get("customer", [None])[0],
            "client_reference_id": form.get("client_reference_id", [None])[0],
            "metadata": _nested(form, "metadata"),
            "success_url": form["success_url"][0],
            "cancel_url": form.get("cancel_url", [form["success_url"][0]])[0],
            "url": f"{self.url}/c/pay/{session_id}",
            "subscription": None,
            "line_items": _line_items(form),
            "subscription_metadata": _nested(form, "subscription_data[metadata]"),
        }
        self.sessions[session_id] = session
        return {k: v for k, v in session.items() if k not in ("line_items", "subscription_metadata")}

    def pay_page(self, session_id: str) -> bytes:
        session = self.sessions[session_id]
        lines = "".join(f"<li>{html.escape(p)} × {q}</li>" for p, q in session["line_items"])
        return (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Checkout (test)</title><link rel='icon' href='data:,'></head><body>"
            f"<h1>Pay {html.escape(str(session['metadata'].get('tenant', '')))}</h1><ul>{lines}</ul>"
            f"<form method='post' action='/c/pay/{session_id}'><p>Card 4242 4242 4242 4242</p>"
            "<button type='submit'>Pay</button></form>"
            f"<a href='{html.escape(session['cancel_url'])}'>Cancel</a></body></html>"
        ).encode()

    def _stripe(self, method: str, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.request(
            method, self.upstream + path, data=data, headers={"Authorization": self.api_key}, timeout=30
        )
        if answer.status_code != 200:
            raise RuntimeError(f"localstripe {method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def pay(self, session_id: str) -> str:
        """The customer pays: card, subscription, webhook; returns where Stripe sends the browser."""
        session = self.sessions[session_id]
        customer = session["customer"]
        card = self._stripe(
            "POST",
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": "4242424242424242",
                "card[exp_month]": "12",
                "card[exp_year]": "2030",
                "card[cvc]": "123",
            },
        )
        self._stripe("POST", f"/v1/payment_methods/{card['id']}/attach", {"customer": customer})
        self._stripe(
            "POST", f"/v1/customers/{customer}", {"invoice_settings[default_payment_method]": card["id"]}
        )
        data: dict[str, Any] = {"customer": customer}
        for n, (plan, quantity) in enumerate(session["line_items"]):
            data[f"items[{n}][plan]"] = plan
            data[f"items[{n}][quantity]"] = str(quantity)
        for key, value in session["subscription_metadata"].items():
            data[f"metadata[{key}]"] = value
        subscription = self._stripe("POST", "/v1/subscriptions", data)
        session.update(status="complete", subscription=subscription["id"])
        self.paid.append(session_id)
        self.webhook_answers.append(self._send_webhook(session))
        return session["success_url"]

    def _send_webhook(self, session: dict[str, Any]) -> int:
        obj = {k: v for k, v in session.items() if k not in ("line_items", "subscription_metadata", "url")}
        event = {
            "id": "evt_" + uuid.uuid4().hex[:24],
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": int(time.time()),
            "type": "checkout.session.completed",
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": obj},
        }
        payload = json.dumps(event).encode()
        t = int(time.time())
        mac = hmac.new(self.webhook_secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
        answer = httpx.post(
            self.webhook_url,
            content=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={mac}"},
            timeout=30,
        )
        return answer.status_code
