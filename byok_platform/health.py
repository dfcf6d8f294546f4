"""Liveness and readiness probes.

Under ASGI (`byok_platform/asgi.py`) they are answered ahead of Django's handler, like `/v1`: a load balancer probes
every web worker, and a probe that went through Django's handler would load the URLconf (the admin, the REST API,
the schema generator and every page) into each worker, about 25 MB a process. The views serve the same answers
under WSGI and the test client.
"""

from collections.abc import Awaitable, Callable, Mapping

import orjson
import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from llm.config.encryption import unreadable_secrets
from llm.sync import run_sync

PROBES = ("/healthz", "/readyz")


def liveness() -> tuple[int, dict[str, object]]:
    return 200, {"status": "ok"}


def readiness() -> tuple[int, dict[str, object]]:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    if checks["database"] == "ok":
        try:
            problem = unreadable_secrets()
        except DatabaseError as exc:
            problem = f"error: {exc.__class__.__name__}"
        checks["secrets"] = "ok" if problem is None else problem
    if settings.REDIS_URL:
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
            checks["redis"] = "ok"
        except (redis.RedisError, OSError) as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
    failing = [name for name, state in checks.items() if state != "ok"]
    body: dict[str, object] = {"status": "ok" if not failing else "unavailable", "checks": checks}
    if failing:
        body["failing"] = failing
    return (503 if failing else 200), body


def healthz(request: HttpRequest) -> JsonResponse:
    status, body = liveness()
    return JsonResponse(body, status=status)


def readyz(request: HttpRequest) -> JsonResponse:
    status, body = readiness()
    return JsonResponse(body, status=status)


async def asgi_probe(path: str, send: Callable[[Mapping[str, object]], Awaitable[None]]) -> None:
    """Answer a probe on an ASGI connection; the readiness check's blocking I/O runs in the gateway's thread pool."""
    status, body = liveness() if path == "/healthz" else await run_sync(readiness)
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": orjson.dumps(body)})
