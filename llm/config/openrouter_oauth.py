"""OpenRouter account linking (OAuth PKCE): the tenant signs in on OpenRouter and comes back with a key it owns.

The flow (https://openrouter.ai/docs/guides/overview/auth/oauth): send the person to `OPENROUTER_AUTH_URL`
(`https://openrouter.ai/auth`) with `callback_url`, `code_challenge` (base64url SHA-256 of a random verifier) and
`code_challenge_method=S256`; OpenRouter sends them back to `callback_url?code=…`; POST `{code, code_verifier,
code_challenge_method}` to `<OPENROUTER_BASE_URL>/auth/keys` answers `{"key": "sk-or-…"}`. There is no client id
and no secret: the verifier, kept in the person's session, is the proof. The key is then stored like any pasted
BYOK key (`llm.config.credentials`), so it is encrypted, masked, audited and rotated the same way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
from django.conf import settings

from llm.config import catalog_data
from llm.config.catalog_data import OPENROUTER

EXCHANGE_TIMEOUT = 15.0
MAX_KEY_LENGTH = 500


class LinkFailed(Exception):
    """The account could not be linked; the message is for the person, in plain words (never a code or key)."""


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def new_pkce() -> Pkce:
    """A fresh verifier (43 characters of base64url, RFC 7636) and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    return Pkce(verifier=verifier, challenge=challenge_of(verifier))


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(*, callback_url: str, challenge: str) -> str:
    """Where to send the person: OpenRouter's consent page, which returns them to `callback_url` with a code."""
    query = urlencode(
        {"callback_url": callback_url, "code_challenge": challenge, "code_challenge_method": "S256"}
    )
    return f"{settings.OPENROUTER_AUTH_URL}?{query}"


def _api_base() -> str:
    """OpenRouter's API, as the gateway calls it (`OPENROUTER_BASE_URL`, the operator's, or the catalog's)."""
    override = os.environ.get("OPENROUTER_BASE_URL", "").strip()
    if override:
        return override.rstrip("/")
    default = next(p["default_base_url"] for p in catalog_data.PROVIDERS if p["id"] == OPENROUTER)
    return str(default).rstrip("/")


def exchange_code(*, code: str, verifier: str) -> str:
    """The key OpenRouter issues for `code`, proven by the verifier; `LinkFailed` in plain words otherwise."""
    try:
        answer = httpx.post(
            f"{_api_base()}/auth/keys",
            json={"code": code, "code_verifier": verifier, "code_challenge_method": "S256"},
            timeout=EXCHANGE_TIMEOUT,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        raise LinkFailed("OpenRouter did not answer in time. Try connecting again.") from None
    except httpx.HTTPError:
        raise LinkFailed("OpenRouter could not be reached. Try again in a moment.") from None
    if answer.status_code in (400, 401, 403):
        raise LinkFailed(
            "OpenRouter did not accept the sign-in (it may have expired or been used already). "
            "Connect again to start over."
        )
    if answer.status_code != 200:
        raise LinkFailed(f"OpenRouter answered with an error ({answer.status_code}). Try again in a moment.")
    try:
        key = answer.json().get("key")
    except (ValueError, AttributeError):
        key = None
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise LinkFailed("OpenRouter's answer held no key. Try connecting again.")
    return key.strip()
