"""No import cycle is closed inside a function: a project module imported in a function body must say why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django.conf import settings

PROJECT = ("llm", "billing", "tenants", "byok_platform")
# A kept function-level import names its reason on its own line: lazy loading of something heavy or optional on
# first use, or Django's app-loading order (AppConfig.ready).
MARKER = re.compile(r"#.*\b(lazy|app registry):")


def _is_project_import(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PROJECT
    return any(alias.name.split(".")[0] in PROJECT for alias in node.names)


def unmarked_function_imports(source: str) -> list[int]:
    """Line numbers of the function-level imports of project modules in `source` that carry no marker."""
    lines = source.splitlines()
    found: list[int] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom) and _is_project_import(child):
                statement = lines[child.lineno - 1 : child.end_lineno]
                if not any(MARKER.search(line) for line in statement):
                    found.append(child.lineno)
            visit(
                child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            )

    visit(ast.parse(source), False)
    return found


def test_no_project_module_is_imported_inside_a_function_without_a_reason():
    base = Path(settings.BASE_DIR)
    offenders = [
        f"{path.relative_to(base)}:{line}"
        for package in PROJECT
        for path in sorted((base / package).rglob("*.py"))
        if "migrations" not in path.parts
        for line in unmarked_function_imports(path.read_text())
    ]
    assert offenders == [], "function-level imports of project modules (move them to the top):\n" + "\n".join(
        offenders
    )


def test_the_check_sees_function_level_imports_and_honours_only_the_markers():
    source = """
from llm import sync  # module level: fine

def f():
    from llm.models import Thread
    import billing.caps
    from . import checks
    from llm import (  # app registry: models load first
        tasks,
    )
    import boto3  # not a project module
    from llm.providers import bedrock  # lazy: pulls in botocore

class C:
    def m(self):
        from tenants.models import Tenant  # noqa: F401
"""
    assert unmarked_function_imports(source) == [5, 6, 7, 16]
