"""WSGI entry point (the product is served over ASGI; this is for tools that want WSGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "byok_platform.settings")
application = get_wsgi_application()
