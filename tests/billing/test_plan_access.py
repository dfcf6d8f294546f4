"""Who may put a tenant on which plan: tenants choose public plans only; private plans are for platform admins;
a paid plan applies only once Stripe confirms it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from billing.caps import limits_for
from billing.models import Subscription
from billing.plans import assign_plan, ensure_subscription
from billing.stripe.client import reset_clients
from tenants.models import AuditEvent, Membership, Tenant
from tenants.roles import Role

pytestmark = pytest.mark.django_db


def _sub(tenant) -> Subscription:
    return ensure_subscription(tenant)


def _client_as(tenant, make_user, role: str) -> APIClient:
    if role == Role.OWNER:
        user = Membership.objects.unscoped().get(tenant=tenant, role=Role.OWNER).user
    else:
        user = make_user()
        Membership.objects.unscoped().create(tenant=tenant, user=user, role=role)
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", [Role.OWNER, Role.BILLING])
def test_a_tenant_cannot_choose_a_private_plan_through_the_api(tenant, make_user, role):
    client = _client_as(tenant, make_user, role)
    private = client.post("/api/billing/plan", {"plan": "enterprise"}, format="json")
    unknown = client.post("/api/billing/plan", {"plan": "gold"}, format="json")
    assert private.status_code == unknown.status_code == 400
    assert set(private.json()) == set(unknown.json()) == {"plan"}
    assert "enterprise" not in private.json()["plan"][0].split("Choose one of:")[1]  # not offered
    sub = _sub(tenant)
    assert sub.plan.slug == "free"
    assert not limits_for(tenant.id).platform_allowed
    assert not AuditEvent.objects.unscoped().filter(tenant=tenant, action__startswith="billing.plan").exists()


def test_a_tenant_cannot_choose_a_private_plan_on_the_billing_page(tenant):
    client = Client()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant).user)
    response = client.post("/billing/plan", {"plan": "enterprise"}, follow=True)
    assert "Unknown plan" in response.content.decode()
    assert _sub(tenant).plan.slug == "free"


def test_a_paying_tenant_cannot_drop_its_subscription_by_choosing_a_private_plan(plan_tenant, stripe):
    sub_id = _sub(plan_tenant).stripe_subscription_id
    client = APIClient()
    client.force_login(Membership.objects.unscoped().get(tenant=plan_tenant).user)
    response = client.post("/api/billing/plan", {"plan": "enterprise"}, format="json")
    assert response.status_code == 400
    assert "plan" in response.json()
    assert stripe.v1.subscriptions.retrieve(sub_id).status == "active"
    sub = _sub(plan_tenant)
    assert sub.plan.slug == "team"
    assert sub.stripe_subscription_id == sub_id


def test_moving_from_a_paid_plan_to_free_cancels_in_stripe(plan_tenant, stripe):
    sub_id = _sub(plan_tenant).stripe_subscription_id
    client = APIClient()
    client.force_login(Membership.objects.unscoped().get(tenant=plan_tenant).user)
    response = client.post("/api/billing/plan", {"plan": "free"}, format="json")
    assert response.status_code == 200
    assert response.json()["plan"] == "free"
    assert stripe.v1.subscriptions.retrieve(sub_id).status == "canceled"
    assert _sub(plan_tenant).stripe_subscription_id == ""


def test_platform_admins_assign_private_plans(db):
    call_command(
        "createtenant", "bigco", "--owner", "cto@bigco.example", "--plan", "enterprise", stdout=StringIO()
    )
    tenant = Tenant.objects.get(slug="bigco")
    assert _sub(tenant).plan.slug == "enterprise"
    assign_plan(tenant=tenant, plan_slug="free")
    assert _sub(tenant).plan.slug == "free"


class _StripeWithPendingUpdate:
    """Stripe's documented JSON for a subscription whose plan update is not paid (status past_due)."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _subscription(self, plan: str, status: str) -> dict:
                return {
                    "id": "sub_Fake",
                    "object": "subscription",
                    "status": status,
                    "customer": "cus_Fake",
                    "items": {
                        "object": "list",
                        "data": [
                            {
                                "id": "si_Fake",
                                "object": "subscription_item",
                                "quantity": 1,
                                "plan": {"id": plan},
                            }
                        ],
                    },
                }

            def do_GET(self) -> None:
                if self.path.startswith("/v1/subscriptions/"):
                    return self._answer(self._subscription("byok-team-agent-1000-usd-month", "active"))
                return self._answer({"id": self.path.rsplit("/", 1)[1], "object": "plan"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(self.path)
                return self._answer(self._subscription("byok-business-agent-2000-usd-month", "past_due"))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_an_upgrade_stripe_does_not_confirm_leaves_the_plan_unchanged(tenant, settings, paid_plans):
    fake = _StripeWithPendingUpdate()
    settings.STRIPE_API_KEY, settings.STRIPE_API_BASE = "sk_test_fake", fake.url
    reset_clients()
    try:
        assign_plan(tenant=tenant, plan_slug="team")
        Subscription.objects.unscoped().filter(tenant=tenant).update(
            stripe_customer_id="cus_Fake", stripe_subscription_id="sub_Fake"
        )
        client = APIClient()
        client.force_login(Membership.objects.unscoped().get(tenant=tenant).user)
        response = client.post("/api/billing/plan", {"plan": "business"}, format="json")
        assert "/v1/subscriptions/sub_Fake" in fake.posts  # Stripe was asked
        assert response.status_code == 402
        assert response.json()["code"] == "payment_failed"
        assert _sub(tenant).plan.slug == "team"
    finally:
        fake.server.shutdown()
        reset_clients()
