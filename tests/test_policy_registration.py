"""llm never imports billing: billing registers the limits policy at start-up and receives recorded usage by
signal. A missing registration is an error, never a silent default (no limits would mean no caps)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from llm import policy

ROOT = Path(__file__).resolve().parents[1]


def test_billing_registered_its_policy_at_start():
    from billing.policy import BillingPolicy

    assert isinstance(policy.policy(), BillingPolicy)
    assert any("on_usage_recorded" in repr(r) for r in policy.usage_recorded.receivers)


def test_a_missing_registration_is_an_error_not_a_default(monkeypatch):
    monkeypatch.setattr(policy, "_policy", None)
    with pytest.raises(ImproperlyConfigured, match="billing"):
        policy.policy()


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_llm_never_imports_billing():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "llm").rglob("*.py")
        if "migrations" not in p.parts and any(n.split(".")[0] == "billing" for n in _imports(p))
    ]
    assert not offenders, offenders


def test_no_import_error_fallbacks_for_apps_that_are_always_installed():
    offenders = []
    for app in ("llm", "billing", "tenants", "byok_platform"):
        for p in (ROOT / app).rglob("*.py"):
            if "migrations" in p.parts:
                continue
            for node in ast.walk(ast.parse(p.read_text())):
                if (
                    isinstance(node, ast.ExceptHandler)
                    and isinstance(node.type, ast.Name)
                    and node.type.id in ("ImportError", "ModuleNotFoundError")
                ):
                    offenders.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
