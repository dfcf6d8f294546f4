"""Alerts: one per tenant, period and threshold — e-mail to owners and billing members, in-app, signed webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.db import connection

from billing import alerts
from billing.caps import after_usage as _after_usage
from billing.caps import caps_update
from billing.managed import managed_set
from billing.models import AlertSent, Notification, Subscription
from billing.plans import assign_plan
from billing.usage import period_of
from tenants.audit import SYSTEM
from tenants.models import Membership
from tenants.roles import Role

from .conftest import make_usage


class Receiver:
    """A local HTTP endpoint that answers with the given statuses in turn and records what it got."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/byok"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


_capture = None


@pytest.fixture(autouse=True)
def _run_on_commit(django_capture_on_commit_callbacks):
    """Tests run inside a transaction: run on_commit callbacks (alert tasks) as a real commit would."""
    global _capture
    _capture = django_capture_on_commit_callbacks
    yield
    _capture = None


def after_usage(**kwargs):
    if connection.in_atomic_block:
        with _capture(execute=True):
            _after_usage(**kwargs)
    else:
        _after_usage(**kwargs)


@pytest.fixture
def celery_retries_in_process():
    """Eager tasks retry in-process (as apply() does) instead of propagating celery's Retry."""
    from byok_platform.celery import app

    before = app.conf.task_eager_propagates
    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = before


@pytest.fixture
def receiver_factory():
    made = []

    def make(statuses):
        r = Receiver(statuses)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def billing_member(tenant, make_user):
    user = make_user("pay@acme.example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=user, role=Role.BILLING)
    member = make_user("dev@acme.example.com")
    Membership.objects.unscoped().create(tenant=tenant, user=member, role=Role.MEMBER)
    return user


@pytest.mark.django_db
def test_crossing_warn_sends_email_to_owners_and_billing_and_an_in_app_notification(tenant, billing_member):
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=1000, hard_tcu=5000)
    after_usage(tenant_id=tenant.id, tcu_before=900, tcu_after=1100, tokens_before=0, tokens_after=0)
    alert = AlertSent.objects.unscoped().get(tenant=tenant)
    assert (alert.threshold, alert.period, alert.value, alert.limit) == ("tcu_warn", period_of(), 1100, 1000)
    assert sorted(m.to[0] for m in mail.outbox) == ["owner@acme.example.com", "pay@acme.example.com"]
    assert "1,100" in mail.outbox[0].body
    assert "1,000" in mail.outbox[0].body
    note = Notification.objects.unscoped().get(tenant=tenant)
    assert note.level == "warning"
    assert "warn" in note.title


@pytest.mark.django_db
def test_usage_below_or_already_past_a_threshold_sends_nothing(tenant):
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=1000, hard_tcu=5000)
    after_usage(tenant_id=tenant.id, tcu_before=100, tcu_after=999, tokens_before=0, tokens_after=0)
    after_usage(tenant_id=tenant.id, tcu_before=1001, tcu_after=1200, tokens_before=0, tokens_after=0)
    assert not AlertSent.objects.unscoped().exists()
    assert not mail.outbox


@pytest.mark.django_db
def test_the_same_threshold_alerts_once_per_period(tenant):
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=1000, hard_tcu=5000)
    for _ in range(3):
        after_usage(tenant_id=tenant.id, tcu_before=900, tcu_after=1100, tokens_before=0, tokens_after=0)
    assert AlertSent.objects.unscoped().filter(tenant=tenant).count() == 1
    assert len(mail.outbox) == 1
    # another period is another alert
    with _capture(execute=True):
        assert alerts.alert_send(
            tenant_id=tenant.id, period="2020-01", threshold="tcu_warn", value=1, limit=1
        )
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_a_byok_tenant_without_caps_of_its_own_gets_no_tcu_alert_however_much_it_spends(tenant):
    after_usage(tenant_id=tenant.id, tcu_before=0, tcu_after=10**12, tokens_before=0, tokens_after=0)
    assert not AlertSent.objects.unscoped().exists()


@pytest.mark.django_db
def test_the_guardrail_alerts_on_platform_tcu_only(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 1000, 2000
    assign_plan(tenant=tenant, plan_slug="enterprise")
    # BYOK spend far past both levels: the guardrail does not count it
    after_usage(
        tenant_id=tenant.id,
        tcu_before=0,
        tcu_after=50_000,
        platform_tcu_before=0,
        platform_tcu_after=900,
        tokens_before=0,
        tokens_after=0,
    )
    assert not AlertSent.objects.unscoped().exists()
    after_usage(
        tenant_id=tenant.id,
        tcu_before=50_000,
        tcu_after=52_100,
        platform_tcu_before=900,
        platform_tcu_after=2_100,
        tokens_before=0,
        tokens_after=0,
    )
    sent = {a.threshold: (a.value, a.limit) for a in AlertSent.objects.unscoped().filter(tenant=tenant)}
    assert sent == {"platform_tcu_warn": (2_100, 1000), "platform_tcu_hard": (2_100, 2000)}
    titles = sorted(Notification.objects.unscoped().values_list("title", flat=True))
    assert titles == ["Acme: platform guardrail reached", "Acme: platform guardrail warn level reached"]


@pytest.mark.django_db
def test_own_caps_and_the_guardrail_alert_apart_each_once(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 1000, 2000
    assign_plan(tenant=tenant, plan_slug="enterprise")
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=500, hard_tcu=None)
    for _ in range(2):
        after_usage(
            tenant_id=tenant.id,
            tcu_before=400,
            tcu_after=1_100,
            platform_tcu_before=0,
            platform_tcu_after=1_100,
            tokens_before=0,
            tokens_after=0,
        )
    assert sorted(AlertSent.objects.unscoped().values_list("threshold", flat=True)) == [
        "platform_tcu_warn",
        "tcu_warn",
    ]


@pytest.mark.django_db
def test_recorded_usage_announces_platform_tcu_to_the_guardrail_alerts(tenant, settings):
    """Through the metering store: stored events carry platform-mode TCU apart from the rest to the alerts."""
    from llm.metering.pricing import Usage
    from llm.metering.queue import record_now

    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 1000, 2000
    assign_plan(tenant=tenant, plan_slug="enterprise")
    with _capture(execute=True):
        record_now(Usage(request_id="req_byok_big", tenant_id=tenant.id, mode="byok", tcu=9_000))
    assert not AlertSent.objects.unscoped().exists()
    with _capture(execute=True):
        record_now(Usage(request_id="req_platform", tenant_id=tenant.id, mode="platform", tcu=1_200))
    alert = AlertSent.objects.unscoped().get(tenant=tenant)
    assert (alert.threshold, alert.value, alert.limit) == ("platform_tcu_warn", 1_200, 1000)


@pytest.mark.django_db
def test_the_billing_cycle_check_sends_a_missed_guardrail_alert_from_platform_usage(tenant, settings):
    settings.SPEND_ALERT_TCU_WARN, settings.SPEND_ALERT_TCU_HARD = 1000, 2000
    assign_plan(tenant=tenant, plan_slug="enterprise")
    make_usage(tenant, tcu=50_000, mode="byok")
    make_usage(tenant, tcu=1_500, mode="platform")
    with _capture(execute=True):
        assert alerts.alerts_check(tenant=tenant, period=period_of()) == ["platform_tcu_warn"]


@pytest.mark.django_db
def test_managed_tiers_alert_at_50_80_and_100_percent_of_included_tokens(tenant):
    managed_set(tenant=tenant, actor=SYSTEM, agent=None, tier_slug="starter")  # 2M included
    after_usage(tenant_id=tenant.id, tcu_before=0, tcu_after=0, tokens_before=0, tokens_after=1_700_000)
    assert set(AlertSent.objects.unscoped().values_list("threshold", flat=True)) == {"tokens_50", "tokens_80"}
    after_usage(
        tenant_id=tenant.id, tcu_before=0, tcu_after=0, tokens_before=1_700_000, tokens_after=2_000_000
    )
    assert set(AlertSent.objects.unscoped().values_list("threshold", flat=True)) == {
        "tokens_50",
        "tokens_80",
        "tokens_100",
    }


@pytest.mark.django_db
def test_free_plan_has_no_included_token_alerts(tenant):
    assign_plan(tenant=tenant, plan_slug="free")
    after_usage(tenant_id=tenant.id, tcu_before=0, tcu_after=0, tokens_before=0, tokens_after=10**9)
    assert not AlertSent.objects.unscoped().exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_send_one_alert_per_threshold(make_tenant, make_user):
    tenant = make_tenant("racer")
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=1000, hard_tcu=2000)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            after_usage(tenant_id=tenant.id, tcu_before=500, tcu_after=2500, tokens_before=0, tokens_after=0)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)
            raise
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(AlertSent.objects.unscoped().filter(tenant=tenant).values_list("threshold", flat=True)) == [
        "tcu_hard",
        "tcu_warn",
    ]
    assert len(mail.outbox) == 2  # one owner, two thresholds
    assert Notification.objects.unscoped().filter(tenant=tenant).count() == 2


@pytest.mark.django_db
def test_alert_webhook_is_signed_with_the_tenants_secret(tenant, receiver_factory, manage_client):
    receiver = receiver_factory([200])
    secret = manage_client.put("/api/billing/alert-webhook", {"url": receiver.url}, format="json").json()[
        "secret"
    ]
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=10, hard_tcu=10_000)
    after_usage(tenant_id=tenant.id, tcu_before=0, tcu_after=50, tokens_before=0, tokens_after=0)
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert alerts.verify(secret, body, headers[alerts.SIGNATURE_HEADER])
    assert not alerts.verify("whsec_wrong", body, headers[alerts.SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["threshold"] == "tcu_warn"
    assert payload["value"] == 50
    assert payload["tenant"] == "acme"
    assert AlertSent.objects.unscoped().get(tenant=tenant).webhook_status == "delivered"


@pytest.mark.django_db
def test_alert_webhook_is_retried_with_backoff_after_errors(
    tenant, receiver_factory, manage_client, monkeypatch, celery_retries_in_process
):
    receiver = receiver_factory([500, 500, 200])
    manage_client.put("/api/billing/alert-webhook", {"url": receiver.url}, format="json")
    countdowns = []
    real_backoff = alerts.backoff_seconds
    monkeypatch.setattr(
        alerts, "backoff_seconds", lambda n: countdowns.append(real_backoff(n)) or countdowns[-1]
    )
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=10, hard_tcu=10_000)
    after_usage(tenant_id=tenant.id, tcu_before=0, tcu_after=50, tokens_before=0, tokens_after=0)
    assert len(receiver.requests) == 3
    assert len(countdowns) == 2
    assert countdowns[0] < countdowns[1]
    alert = AlertSent.objects.unscoped().get(tenant=tenant)
    assert alert.webhook_status == "delivered"
    assert alert.webhook_attempts == 3
    # the same event id each time, so the receiver can de-duplicate
    assert len({h["X-BYOK-Event-Id"] for h, _ in receiver.requests}) == 1


@pytest.mark.django_db
def test_alert_webhook_gives_up_after_max_retries_without_breaking_the_alert(
    tenant, receiver_factory, manage_client, monkeypatch, celery_retries_in_process
):
    from billing import tasks

    receiver = receiver_factory([503])
    manage_client.put("/api/billing/alert-webhook", {"url": receiver.url}, format="json")
    monkeypatch.setattr(tasks.deliver_alert_webhook, "max_retries", 2)
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=10, hard_tcu=10_000)
    after_usage(tenant_id=tenant.id, tcu_before=0, tcu_after=50, tokens_before=0, tokens_after=0)
    alert = AlertSent.objects.unscoped().get(tenant=tenant)
    assert alert.webhook_status == "failed"
    assert len(receiver.requests) == 3
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_missed_alert_is_sent_by_the_billing_cycle_check(tenant):
    caps_update(tenant=tenant, actor=SYSTEM, warn_tcu=100, hard_tcu=10_000)
    make_usage(tenant, tcu=150, tokens=10)
    with _capture(execute=True):
        assert alerts.alerts_check(tenant=tenant, period=period_of()) == ["tcu_warn"]
    assert len(mail.outbox) == 1
    assert alerts.alerts_check(tenant=tenant, period=period_of()) == []


@pytest.mark.django_db
def test_alert_webhook_url_must_be_public_in_production(tenant, manage_client, settings):
    settings.ALLOW_PRIVATE_ENDPOINTS = False
    response = manage_client.put("/api/billing/alert-webhook", {"url": "https://127.0.0.1/x"}, format="json")
    assert response.status_code == 400
    assert "url" in response.json()
    assert not Subscription.objects.unscoped().filter(tenant=tenant).exclude(alert_webhook_url="").exists()
