"""`manage.py check --deploy` refuses a production configuration whose mail never leaves the server."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError


@pytest.mark.parametrize(
    "backend",
    ["django.core.mail.backends.console.EmailBackend", "django.core.mail.backends.filebased.EmailBackend"],
)
def test_check_deploy_fails_without_a_real_mail_backend_in_production(settings, backend):
    settings.DEBUG = False
    settings.EMAIL_BACKEND = backend
    with pytest.raises(SystemCheckError, match=r"(?s)byok\.E001.*EMAIL_URL"):
        call_command("check", "--deploy", stdout=StringIO(), stderr=StringIO())


def _deploy_check_ids() -> set[str]:
    return {message.id for message in run_checks(include_deployment_checks=True)}


def test_check_deploy_accepts_smtp_in_production(settings):
    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert "byok.E001" not in _deploy_check_ids()


def test_the_console_backend_is_fine_in_development(settings):
    settings.DEBUG = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    assert "byok.E001" not in _deploy_check_ids()


def test_production_settings_with_consolemail_fail_check_deploy():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "byok_platform.settings",
        "DEBUG": "false",
        "SECRET_KEY": "x" * 60,
        "EMAIL_URL": "consolemail://",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=Path(__file__).parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "byok.E001" in result.stderr
