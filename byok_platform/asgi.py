"""ASGI entry point: `/v1/*` goes to the lean gateway app, the health probes are answered here, everything else goes
to Django's handler."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "byok_platform.settings")
django_application = get_asgi_application()

from byok_platform import health  # noqa: E402  (needs Django set up first)
from llm.gateway import app as gateway  # noqa: E402


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        await gateway.app(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] in health.PROBES:
        await health.asgi_probe(scope["path"], send)
    elif scope["type"] == "lifespan":
        await gateway.lifespan(scope, receive, send)
    else:
        await django_application(scope, receive, send)
