"""Foundation: health probes, fail-closed scoping, secret redaction in logs, deploy checks, compose file."""

import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from byok_platform.logging import JsonFormatter, RedactSecretsFilter
from tenants.models import Agent
from tenants.scoping import TenantScopeError, tenant_scope

ROOT = Path(__file__).resolve().parent.parent


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "secrets": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_it_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]


@pytest.mark.django_db
def test_unscoped_query_of_tenant_owned_model_raises(tenant):
    with pytest.raises(TenantScopeError):
        list(Agent.objects.all())


@pytest.mark.django_db
def test_scoped_query_sees_only_the_tenant_in_scope(tenant, other_tenant):
    from tenants.audit import SYSTEM
    from tenants.services import agent_create

    agent_create(tenant=tenant, actor=SYSTEM, slug="a-bot")
    agent_create(tenant=other_tenant, actor=SYSTEM, slug="b-bot")
    with tenant_scope(tenant):
        assert [a.slug for a in Agent.objects.all()] == ["a-bot"]
    with tenant_scope(other_tenant):
        assert [a.slug for a in Agent.objects.all()] == ["b-bot"]
    assert Agent.objects.unscoped().count() == 2


def _log_through_filter(formatter: logging.Formatter, message: str, *args) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, *args)
        try:
            raise ValueError("upstream said: invalid key sk-proj-abcdefghijklmnop1234")
        except ValueError:
            logger.exception("call failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


# Assembled at run time so that no committed line looks like a real key.
SECRETS = [
    "sk-proj-abcdefghijklmnop1234",
    "sk-" + "ant-api03-zyxwvutsrqponmlk9876",
    "byok-Zq3x9v8w7u6t5s4r3q2p1o0nMLKJ",
    "sk_" + "live_51Habcdefghijklmn",
    "whsec_abcdefghijklmnop",
    "AKIA" + "IOSFODNN7EXAMPLE",
    "AIzaSyA-abcdefghijklmnopqrstuvwx",
    "Bearer opaque-token-value-123",
]


@pytest.mark.parametrize(
    "formatter", [JsonFormatter(), logging.Formatter("%(message)s")], ids=["json", "text"]
)
def test_logs_never_contain_secrets(formatter):
    output = _log_through_filter(
        formatter,
        "calling upstream with %s, %s, key=%s stripe=%s hook=%s aws=%s google=%s headers={'Authorization': '%s'}",
        *SECRETS,
    )
    for secret in SECRETS:
        assert secret not in output
    assert "opaque-token-value-123" not in output
    assert "[REDACTED]" in output
    assert "call failed" in output


def test_check_deploy_is_clean_with_production_settings():
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in {"DJANGO_ALLOW_ASYNC_UNSAFE", "REDIS_URL", "DATABASE_URL"}
        },
        "DEBUG": "false",
        "SECRET_KEY": "a-very-long-and-random-production-secret-key-0123456789abcdefXYZ",
        "ALLOWED_HOSTS": "byok.example.com",
        "DATABASE_URL": "sqlite:////tmp/byok-deploy-check.sqlite3",
        "DJANGO_SETTINGS_MODULE": "byok_platform.settings",
        "EMAIL_URL": "smtp+tls://mailer:mail-password@smtp.example.com:587",  # production mail must deliver
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_compose_describes_the_full_stack():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name in ("postgres", "redis", "web", "worker"):
        assert "healthcheck" in services[name], name
    assert "uvicorn" in (ROOT / "Dockerfile").read_text()
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        (ROOT / ".env").exists() or (ROOT / ".env").write_text("")
        result = subprocess.run(
            ["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_every_environment_variable_is_documented():
    import re

    read = set()
    packages = [d for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != "tests"]
    for path in [p for d in packages for p in d.glob("**/*.py")]:
        if "node_modules" in path.parts:
            continue
        text = path.read_text()
        read |= set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', text))
        read |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]+)"', text))
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    missing_readme = sorted(v for v in read if v not in readme)
    missing_example = sorted(v for v in read if v not in example)
    assert not missing_readme, f"not in README: {missing_readme}"
    assert not missing_example, f"not in .env.example: {missing_example}"
