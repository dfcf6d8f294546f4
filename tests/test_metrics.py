"""`/metrics`: Prometheus text for allowed scrapers only."""

import pytest

pytestmark = pytest.mark.django_db


def test_metrics_from_an_allowed_address(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    text = response.content.decode()
    assert "byok_requests_total" in text or "# HELP byok_requests" in text
    assert "byok_celery_queue_depth" in text


def test_metrics_refused_elsewhere_without_token(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert ok.status_code == 200
