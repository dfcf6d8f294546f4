"""The embedded default as a new user meets it: `make run` on SQLite without Redis, the `openai` SDK against a
local fake provider, usage visible (scripts/embedded_smoke.py, which .ci/run also runs on its own)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.faults.conftest import ROOT

pytestmark = pytest.mark.slow


def test_embedded_default_serves_the_openai_sdk_and_shows_usage():
    done = subprocess.run(
        [sys.executable, "scripts/embedded_smoke.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage shows the 6 calls" in done.stdout
    assert "Anthropic Messages (anthropic SDK)" in done.stdout
    assert "Responses, stored and chained" in done.stdout
