"""ASGI entry point: `/v1/*` goes to the lean gateway app, everything else to Django's handler."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "byok_platform.settings")
django_application = get_asgi_application()

from llm.gateway import app as gateway  # noqa: E402  (needs Django set up first)


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        await gateway.app(scope, receive, send)
    elif scope["type"] == "lifespan":
        await gateway.lifespan(scope, receive, send)
    else:
        await django_application(scope, receive, send)
