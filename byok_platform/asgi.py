"""ASGI entry point: `/v1/*` goes to the lean gateway app, everything else to Django's handler."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "byok_platform.settings")
django_application = get_asgi_application()

application = django_application
