"""The Celery application; tasks are discovered in each Django app's tasks module."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "byok_platform.settings")
# Celery's Django fixup runs Django's system checks when a worker starts; they load the URLconf and with it the
# admin, the REST API, the schema generator and every page, none of which a worker runs (about 25 MB a process).
# The checks run where they belong: `manage.py check --deploy` at deploy time, and in the test suite.
os.environ.setdefault("CELERY_SKIP_CHECKS", "true")

app = Celery("byok_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Defaults; django-celery-beat copies them into the database, where admins can edit them.
app.conf.beat_schedule = {
    "drain-usage-events": {"task": "llm.drain_usage_events", "schedule": 5.0},
    "rollup-usage": {"task": "llm.rollup_usage", "schedule": 600.0},
    "purge-stored-responses": {"task": "llm.purge_stored_responses", "schedule": 3600.0},
}
