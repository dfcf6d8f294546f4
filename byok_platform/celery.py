"""The Celery application; tasks are discovered in each Django app's tasks module."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "byok_platform.settings")

app = Celery("byok_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
