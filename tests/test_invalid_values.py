"""Values that used to crash with a 500: each is now a field error (or a 400 for the Stripe webhook) and changes
nothing. (Caps, budgets and key spend limits at 2^63 and beyond: tests/billing/test_cap_ceiling.py.)"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from billing.models import StripeEvent, Subscription
from billing.plans import assign_plan, ensure_subscription
from llm.models import Job, Route
from tenants.middleware import SESSION_KEY
from tenants.models import AuditEvent, Membership
from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.test_webhooks import event, signed

pytestmark = pytest.mark.django_db

NOT_UTF8 = "routes:\n  - name: caf\u00e9\n".encode("latin-1")


@pytest.fixture
def owner_client(tenant) -> Client:
    client = Client()
    client.force_login(Membership.objects.unscoped().get(tenant=tenant).user)
    return client


@pytest.mark.parametrize("value", ["abc", "", "1.5", "99999999999999999999999", "\u0661"])
def test_switching_to_a_workspace_that_is_not_an_id(tenant, owner_client, value):
    session = owner_client.session
    session[SESSION_KEY] = tenant.id
    session.save()
    response = owner_client.post("/workspace/switch/", {"tenant": value}, follow=True)
    assert response.status_code == 200
    assert "You are not a member of that workspace." in response.content.decode()
    assert owner_client.session[SESSION_KEY] == tenant.id


def test_an_alert_webhook_url_over_500_characters(tenant, manage_client):
    url = "https://hooks.example.com/" + "a" * 500
    response = manage_client.put("/api/billing/alert-webhook", {"url": url}, format="json")
    assert response.status_code == 400
    assert "500 characters" in response.json()["url"][0]
    assert ensure_subscription(tenant).alert_webhook_url == ""


def test_an_alert_webhook_url_over_500_characters_on_the_billing_page(tenant, owner_client):
    response = owner_client.post("/billing/", {"action": "webhook", "url": "https://x.example/" + "a" * 600})
    assert response.status_code == 400
    assert "500 characters" in response.content.decode()
    assert ensure_subscription(tenant).alert_webhook_url == ""


def test_a_job_model_over_200_characters(tenant, manage_client):
    body = {"model": "m" * 201, "requests": [{"messages": [{"role": "user", "content": "hi"}]}]}
    response = manage_client.post("/api/llm/jobs", body, format="json")
    assert response.status_code == 400
    assert "model" in response.json()
    assert not Job.objects.unscoped().filter(tenant=tenant).exists()


def test_a_route_file_that_is_not_utf8_through_the_api(tenant, manage_client):
    upload = SimpleUploadedFile("routes.yaml", NOT_UTF8, content_type="application/yaml")
    response = manage_client.post("/api/llm/routes/import", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert "UTF-8" in response.json()["yaml"][0]
    raw = manage_client.generic("POST", "/api/llm/routes/import", NOT_UTF8, content_type="application/yaml")
    assert raw.status_code == 400
    assert "UTF-8" in raw.json()["yaml"][0]
    assert not Route.objects.unscoped().filter(tenant=tenant).exists()


def test_a_route_file_that_is_not_utf8_on_the_routes_page(tenant, owner_client):
    upload = SimpleUploadedFile("routes.yaml", NOT_UTF8, content_type="application/yaml")
    response = owner_client.post("/routes/", {"action": "import", "file": upload}, follow=True)
    assert response.status_code in (200, 400)
    assert "UTF-8" in response.content.decode()
    assert not Route.objects.unscoped().filter(tenant=tenant).exists()


@pytest.fixture
def paying(tenant, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    sub = assign_plan(tenant=tenant, plan_slug="enterprise")
    Subscription.objects.unscoped().filter(pk=sub.pk).update(
        stripe_customer_id="cus_Malformed", stripe_subscription_id="sub_Malformed"
    )
    return tenant


SUBSCRIPTION = {
    "id": "sub_Malformed",
    "object": "subscription",
    "customer": "cus_Malformed",
    "status": "active",
}


@pytest.mark.parametrize(
    "payload",
    [
        {**event("customer.subscription.updated", {}), "data": "not an object"},
        {**event("customer.subscription.updated", {}), "data": {"object": ["a", "list"]}},
        {**event("customer.subscription.updated", {}), "id": 12345},
        event("customer.subscription.updated", {**SUBSCRIPTION, "items": {"data": [{"quantity": "lots"}]}}),
        event("customer.subscription.updated", {**SUBSCRIPTION, "items": "none"}),
        event(
            "customer.subscription.updated", {**SUBSCRIPTION, "id": "sub_" + "x" * 100, "status": "trialing"}
        ),
        event("customer.subscription.updated", {k: v for k, v in SUBSCRIPTION.items() if k != "id"}),
        event(
            "invoice.paid",
            {"id": "in_1", "object": "invoice", "customer": "cus_Malformed", "lines": {"data": "x"}},
        ),
        event("customer.subscription.updated", {**SUBSCRIPTION, "metadata": "tenant"}),
    ],
)
def test_a_validly_signed_but_malformed_stripe_event_is_400_and_changes_nothing(paying, payload):
    before = Subscription.objects.unscoped().get(tenant=paying)
    body, header = signed(payload)
    response = Client().post(
        "/billing/stripe/webhook", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    after = Subscription.objects.unscoped().get(tenant=paying)
    fields = [
        "plan_id",
        "status",
        "quantity",
        "stripe_subscription_id",
        "current_period_end",
        "past_due_since",
    ]
    assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields]
    assert not StripeEvent.objects.filter(processed_at__isnull=False).exists()
    assert (
        not AuditEvent.objects.unscoped()
        .filter(tenant=paying, action__startswith="billing.plan.change")
        .exists()
    )
