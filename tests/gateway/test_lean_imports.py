"""The gateway's process loads only what the call path uses: no admin, API schema, Stripe or AWS SDK at start."""

import os
import subprocess
import sys

from django.conf import settings

# Loaded on first use by the pages, the API schema, billing's Stripe calls and the Bedrock adapter, never at start.
NOT_AT_START = (
    "llm.admin",
    "billing.admin",
    "tenants.admin",
    "drf_spectacular.plumbing",
    "stripe",
    "botocore",
    "boto3",
)

PROBE = """
import sys
import byok_platform.asgi  # what uvicorn imports in each web worker
print(",".join(m for m in sys.argv[1:] if m in sys.modules))
"""


def test_the_asgi_entry_point_does_not_import_the_admin_schema_stripe_or_aws():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "byok_platform.settings"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *NOT_AT_START],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "", f"imported at start: {out.stdout.strip()}"


def test_the_admin_still_registers_every_model_once_the_urlconf_loads(client):
    from django.contrib import admin

    client.get("/healthz")  # the first request loads the URLconf, which runs the admin's autodiscovery
    registered = {m._meta.label for m in admin.site._registry}
    assert {"tenants.Tenant", "llm.CatalogModel", "billing.Plan"} <= registered
