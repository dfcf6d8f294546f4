"""The two locks: `requirements.lock` (the image) is exactly the runtime closure of `pyproject.toml`'s dependencies,
pinned as in `requirements-dev.lock`, and the application imports nothing that only the dev lock installs."""

import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_runtime_lock_is_the_closure_of_the_declared_dependencies():
    result = subprocess.run(
        [sys.executable, "scripts/lock.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_runtime_lock_pins_what_the_dev_lock_pins_and_no_tool():
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    assert runtime, "empty runtime lock"
    assert {name: dev.get(name) for name in runtime} == runtime
    for tool in (
        "pytest",
        "mypy",
        "ruff",
        "hypothesis",
        "playwright",
        "openai",
        "anthropic",
        "rich",
        "pygments",
    ):
        assert tool in dev
        assert tool not in runtime


def test_the_application_imports_without_the_dev_only_packages(tmp_path):
    """Every module of the four packages imports from a site-packages that holds the runtime distributions only, as
    the image does (a directory of links to this environment's, the dev-only packages left out)."""
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    dev_only = set(dev) - set(runtime)
    owners = packages_distributions()
    blocked = {
        top
        for top, dists in owners.items()
        if all(re.sub(r"[-_.]+", "-", d).lower() in dev_only for d in dists)
    }
    assert {"pytest", "rich", "openai"} <= blocked
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    runtime_site = tmp_path / "site-packages"
    runtime_site.mkdir()
    for entry in site.iterdir():
        if entry.name.endswith(".dist-info"):
            keep = re.sub(r"[-_.]+", "-", entry.name.split("-")[0]).lower() not in dev_only
        else:
            keep = entry.suffix != ".pth" and entry.name.split(".")[0] not in blocked
        if keep:
            (runtime_site / entry.name).symlink_to(entry)
    script = """
import importlib, pkgutil, sys
import django
django.setup()
for package in ("byok_platform", "tenants", "llm", "billing"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if ".tests" not in info.name:
            importlib.import_module(info.name)
leaked = sorted(name for name in sys.modules if name.partition(".")[0] in set(sys.argv[1].split(",")))
print("imported", len(sys.modules), "leaked", leaked)
"""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{ROOT}:{runtime_site}",
        "DJANGO_SETTINGS_MODULE": "byok_platform.settings",
        "DATABASE_URL": "sqlite:///:memory:",
        "SECRET_KEY": "dependency-test-only-" + "x" * 40,
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, ",".join(sorted(blocked))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("imported"), result.stdout
    assert result.stdout.strip().endswith("leaked []"), result.stdout
