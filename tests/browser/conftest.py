"""Playwright driving Debian's Chromium against Django's live server; console errors fail the test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.gateway.conftest import gateway_url  # noqa: F401  (the real ASGI gateway under uvicorn)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module", autouse=True)
def _async_unsafe_for_playwright():
    """Playwright's sync API runs an event loop in the test's thread, so Django sees the test's own ORM calls as
    made from async code. Allowed here only, for the browser tests' duration; the rest of the suite runs without."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser():
    """Module-scoped: Playwright's sync API runs an event loop in this thread, which must be gone before other
    tests call asyncio.run()."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        raise pytest.UsageError(f"Browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url)
    page = context.new_page()
    errors: list[str] = []
    # A 400 from the API is a validation answer the page shows next to the field, not a page error.
    expected = "the server responded with a status of 400"
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" and expected not in msg.text else None,
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()
    assert not errors, f"console errors: {errors}"


def shot(page, name: str) -> None:
    """Full-page screenshots at desktop and phone width, kept as test artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(
        300
    )  # let charts and other resize observers settle, as on a phone that loaded the page
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(size)


def signup(page, *, email="owner@example.com", slug="acme", name="Acme AI") -> None:
    page.goto("/signup/")
    page.fill("#id_name", "Owner")
    page.fill("#id_email", email)
    page.fill("#id_password", "a-sturdy-passphrase-42")
    page.fill("#id_tenant_name", name)
    page.fill("#id_tenant_slug", slug)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard/")
