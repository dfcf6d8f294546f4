"""Checkout and Billing Portal (which localstripe lacks): tested at the HTTP boundary against a tiny fake that
answers with Stripe's documented JSON, so the project's real SDK calls stay in the path."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from rest_framework.test import APIClient

from billing.models import ManagedAgent, Subscription
from billing.plans import plan_change
from billing.stripe.client import reset_clients
from tenants.audit import SYSTEM
from tenants.models import Membership

pytestmark = pytest.mark.django_db

CHECKOUT_URL = "https://checkout.stripe.com/c/pay/cs_test_a1b2c3"
PORTAL_URL = "https://billing.stripe.com/p/session/test_YWNjdF8x"


class FakeStripe:
    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                outer.calls.append(("GET", self.path, {}))
                if self.path.startswith("/v1/customers/"):
                    return self._answer(
                        200,
                        {
                            "id": "cus_Fake",
                            "object": "customer",
                            "metadata": {"tenant": "acme"},
                            "invoice_settings": {"default_payment_method": None},
                            "default_source": None,
                        },
                    )
                if self.path.startswith("/v1/plans/"):
                    return self._answer(200, {"id": self.path.rsplit("/", 1)[1], "object": "plan"})
                return self._answer(
                    404, {"error": {"type": "invalid_request_error", "message": "No such object"}}
                )

            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                outer.calls.append(("POST", self.path, form))
                if self.path == "/v1/customers":
                    return self._answer(200, {"id": "cus_Fake", "object": "customer", "metadata": {}})
                if self.path == "/v1/checkout/sessions":
                    return self._answer(
                        200,
                        {
                            "id": "cs_test_a1b2c3",
                            "object": "checkout.session",
                            "mode": "subscription",
                            "status": "open",
                            "customer": "cus_Fake",
                            "url": CHECKOUT_URL,
                        },
                    )
                if self.path == "/v1/billing_portal/sessions":
                    return self._answer(
                        200,
                        {
                            "id": "bps_1Fake",
                            "object": "billing_portal.session",
                            "customer": "cus_Fake",
                            "return_url": form["return_url"][0],
                            "url": PORTAL_URL,
                        },
                    )
                return self._answer(
                    404, {"error": {"type": "invalid_request_error", "message": "No such route"}}
                )

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_stripe(settings):
    fake = FakeStripe()
    settings.STRIPE_API_KEY, settings.STRIPE_API_BASE = "sk_test_fake", fake.url
    reset_clients()
    yield fake
    fake.server.shutdown()
    reset_clients()


def test_choosing_a_paid_plan_without_a_card_returns_the_checkout_url(tenant, fake_stripe, paid_plans):
    result = plan_change(tenant=tenant, actor=SYSTEM, plan_slug="team")
    assert result.checkout_url == CHECKOUT_URL
    sub = Subscription.objects.unscoped().select_related("plan").get(tenant=tenant)
    assert sub.plan.slug == "free"  # applied when Stripe confirms (webhook)
    assert sub.stripe_customer_id == "cus_Fake"
    _, _, form = next(c for c in fake_stripe.calls if c[1] == "/v1/checkout/sessions")
    assert form["mode"] == ["subscription"]
    assert form["customer"] == ["cus_Fake"]
    assert form["line_items[0][price]"] == ["byok-team-agent-1000-usd-month"]
    assert form["subscription_data[metadata][plan]"] == ["team"]
    assert not any("card" in key for _, _, f in fake_stripe.calls for key in f)  # never a card number


def test_api_plan_change_and_portal_return_stripe_hosted_urls(tenant, fake_stripe, paid_plans):
    client = APIClient()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant).user)
    body = client.post("/api/billing/plan", {"plan": "business"}, format="json").json()
    assert body["checkout_url"] == CHECKOUT_URL
    assert body["plan"] == "free"
    portal = client.post("/api/billing/portal")
    assert portal.status_code == 200
    assert portal.json() == {"url": PORTAL_URL}


def test_member_cannot_change_the_plan(tenant, fake_stripe, make_user, paid_plans):
    user = make_user()
    Membership.objects.unscoped().create(tenant=tenant, user=user, role="member")
    client = APIClient()
    client.force_login(user)
    Membership.objects.unscoped().filter(tenant=tenant).exclude(user=user).delete()
    assert client.post("/api/billing/plan", {"plan": "team"}, format="json").status_code == 403
    assert client.put("/api/managed", {"tier": "pro"}, format="json").status_code == 403
    assert fake_stripe.calls == []


def test_turning_managed_llm_on_without_a_card_returns_the_checkout_url(tenant, agent, fake_stripe):
    client = APIClient()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant).user)
    response = client.put(f"/api/agents/{agent.slug}/managed", {"tier": "pro"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["checkout_url"] == CHECKOUT_URL
    assert body["tier"] is None  # applied when Stripe confirms (checkout.session.completed)
    assert not ManagedAgent.objects.unscoped().filter(tenant=tenant).exists()
    _, _, form = next(c for c in fake_stripe.calls if c[1] == "/v1/checkout/sessions")
    assert form["mode"] == ["subscription"]
    assert form["line_items[0][price]"] == ["byok-tier-pro-1000-usd-month"]
    assert form["line_items[0][quantity]"] == ["1"]
    assert "line_items[1][price]" not in form
    assert form["metadata[managed_tier]"] == ["pro"]
    assert form["metadata[managed_agent]"] == [str(agent.pk)]
    assert form["success_url"] == ["http://127.0.0.1:8000/agents/support-bot/?checkout=success"]
    assert not any("card" in key for _, _, f in fake_stripe.calls for key in f)
