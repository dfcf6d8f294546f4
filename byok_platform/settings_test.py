"""Test settings: the real PostgreSQL and Redis on 127.0.0.1 unless DATABASE_URL / REDIS_URL say otherwise."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
os.environ.setdefault("CACHE_KEY_PREFIX", f"byok-test-{os.getpid()}")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("ALLOW_PRIVATE_ENDPOINTS", "true")

from .settings import *  # noqa: F403
from .settings import DATABASES, MIDDLEWARE

# One test database per run, so that several runs on one machine (developers, CI) never collide.
DATABASES["default"]["TEST"] = {"NAME": f"test_byok_{os.getpid()}"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
MIDDLEWARE = [m for m in MIDDLEWARE if "WhiteNoise" not in m]
STORAGES = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
