"""The Celery application; tasks are discovered in each Django app's tasks module."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "byok_platform.settings")

app = Celery("byok_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Defaults; django-celery-beat copies them into the database, where admins can edit them.
app.conf.beat_schedule = {
    "drain-usage-events": {"task": "llm.drain_usage_events", "schedule": 5.0},
    "rollup-usage": {"task": "llm.rollup_usage", "schedule": 600.0},
}
