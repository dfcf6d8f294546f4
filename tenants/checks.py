"""Deploy checks (`manage.py check --deploy`) for settings that are fine in development but unsafe in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

# Back ends that never deliver a mail: reset and invitation links would end up in a log, a file or nowhere.
NON_DELIVERING_EMAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
}


@register(Tags.security, deploy=True)
def check_email_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG or settings.EMAIL_BACKEND not in NON_DELIVERING_EMAIL_BACKENDS:
        return []
    return [
        Error(
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND} with DEBUG off: password-reset and invitation links would be "
            "written to logs or files instead of being delivered.",
            hint="Set EMAIL_URL to a real mail server, e.g. smtp+tls://user:password@smtp.example.com:587.",
            id="byok.E001",
        )
    ]
