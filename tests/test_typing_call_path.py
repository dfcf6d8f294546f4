"""The call path is typed with its real classes: no `Any` in its modules but at the listed edges (arbitrary JSON,
untyped library replies), each with its reason. Read from the source (AST), so it needs no mypy run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CALL_PATH = sorted(
    {
        *ROOT.glob("llm/calls/*.py"),
        *ROOT.glob("llm/providers/*.py"),
        ROOT / "llm/limits/budget.py",
        ROOT / "llm/metering/pricing.py",
        ROOT / "llm/metering/queue.py",
        ROOT / "llm/gateway/app.py",
        ROOT / "llm/policy.py",
        ROOT / "llm/sync.py",
        ROOT / "llm/jsontypes.py",
    }
)

_CLIENT = (
    "a client of `budget.backend().sync_client()`: redis-py types every reply `bytes | str | None` whatever the "
    "client, and this one never decodes, so a typed client would mean narrowing each reply at run time"
)

# (module, qualified name) → why `Any` is the right type there. A name covers what is nested in it.
ALLOWED = {
    ("llm/jsontypes.py", "JSON"): (
        "the one name for arbitrary JSON from a client or a provider, read defensively wherever it is used"
    ),
    ("llm/calls/hot_cache.py", "TTLCache"): (
        "one per-process cache holds each kind of value (keys, limits, budgets, routes) under its own kind of "
        "key; `admission._cached` gives every lookup the type of its loader"
    ),
    ("llm/limits/budget.py", "RedisBackend.sync_client"): _CLIENT,
    ("llm/limits/budget.py", "RedisBackend._interpret"): (
        "the admit script's Lua reply (a list of numbers, then a list), untyped in redis-py"
    ),
    ("llm/limits/budget.py", "_guard"): "a Lua script's reply: redis-py's Script.__call__ is untyped",
    ("llm/limits/budget.py", "_aguard"): "a Lua script's reply: redis-py's AsyncScript.__call__ is untyped",
    ("llm/metering/queue.py", "_ensure_group"): _CLIENT,
    ("llm/metering/queue.py", "_next_batch"): _CLIENT,
    ("llm/metering/queue.py", "_read_batch"): _CLIENT,
    ("llm/metering/queue.py", "_forget_idle_consumers"): _CLIENT,
    ("llm/metering/queue.py", "_dead_letter"): _CLIENT,
}


def _any_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names `Any` is imported as, and the names of the typing modules themselves."""
    names, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("typing", "typing_extensions"):
            names |= {a.asname or a.name for a in node.names if a.name == "Any"}
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name in ("typing", "typing_extensions")}
    return names, modules


def _uses_any(node: ast.AST, names: set[str], modules: set[str]) -> list[int]:
    """Lines where `node` spells Any: `Any`, `typing.Any`, or either inside a string annotation."""
    lines = []
    for sub in ast.walk(node):
        bare = isinstance(sub, ast.Name) and sub.id in names
        dotted = (
            isinstance(sub, ast.Attribute) and sub.attr == "Any" and getattr(sub.value, "id", "") in modules
        )
        if bare or dotted:
            lines.append(sub.lineno)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            try:
                quoted = ast.parse(sub.value, mode="eval")
            except SyntaxError:
                continue
            lines += [sub.lineno for _ in _uses_any(quoted, names, modules)]
    return lines


def _annotations(node: ast.AST) -> list[ast.AST]:
    """What a statement annotates: a function's signature, a variable's or field's annotation, an alias's value,
    and the type named by a `cast`."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        return [a.annotation for a in every if a is not None and a.annotation is not None] + (
            [node.returns] if node.returns is not None else []
        )
    if isinstance(node, ast.AnnAssign):
        return [node.annotation] + ([node.value] if _is_alias(node) and node.value is not None else [])
    if isinstance(node, ast.Assign):
        return [node.value]  # `X = dict[str, Any]` at any level makes X an alias of Any
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "cast":
        return node.args[:1]
    return []


def _is_alias(node: ast.AnnAssign) -> bool:
    return "TypeAlias" in ast.unparse(node.annotation)


def _scope_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.AnnAssign | ast.Assign):
        targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            return targets[0].id
    return None


def any_uses(source: str) -> list[tuple[int, str]]:
    """(line, qualified name) of every annotation, alias or cast in `source` that spells `Any`."""
    tree = ast.parse(source)
    names, modules = _any_names(tree)
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        name = _scope_name(node)
        here = (*scope, name) if name and not isinstance(node, ast.Assign | ast.AnnAssign) else scope
        for annotation in _annotations(node):
            owner = ".".join((*scope, name)) if name else ".".join(scope)
            found.extend((line, owner or "<module>") for line in _uses_any(annotation, names, modules))
        for child in ast.iter_child_nodes(node):
            visit(child, here)

    visit(tree, ())
    return sorted(set(found))


def _allowed(module: str, qualname: str) -> bool:
    parts = qualname.split(".")
    return any((module, ".".join(parts[:i])) in ALLOWED for i in range(1, len(parts) + 1))


def test_the_call_path_annotates_no_any_but_the_listed_edges():
    found = []
    for path in CALL_PATH:
        module = path.relative_to(ROOT).as_posix()
        for line, qualname in any_uses(path.read_text()):
            if not _allowed(module, qualname):
                found.append(f"{module}:{line} {qualname}")
    assert not found, (
        "`Any` on the call path (use the real class, a Protocol or TypedDict, `object`, or llm.jsontypes.JSON "
        "for arbitrary JSON; a true exception goes into ALLOWED with its reason):\n" + "\n".join(found)
    )


def test_every_allowed_edge_still_exists():
    """An exception that is no longer needed is removed from the list, so the list stays the truth."""
    used = {
        key
        for path in CALL_PATH
        for _, qualname in any_uses(path.read_text())
        for key in ALLOWED
        if key[0] == path.relative_to(ROOT).as_posix()
        and (qualname == key[1] or qualname.startswith(key[1] + "."))
    }
    assert set(ALLOWED) - used == set()


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("from typing import Any\ndef f(x: Any) -> None: ...", "f"),
        ("from typing import Any\nasync def f() -> list[Any]: ...", "f"),
        ("from typing import Any\ndef f(**kw: Any) -> None: ...", "f"),
        ("from typing import Any as A\ndef f(x: 'A') -> None: ...", "f"),
        ("import typing\nclass C:\n    def m(self, x: 'dict[str, typing.Any]') -> None: ...", "C.m"),
        (
            "from dataclasses import dataclass\nfrom typing import Any\n@dataclass\nclass C:\n    x: Any",
            "C.x",
        ),
        (
            "from typing import Any\nclass C:\n    def __init__(self) -> None:\n        self.x: Any = 1",
            "C.__init__",
        ),
        ("from typing import Any\nRow = dict[str, Any]", "Row"),
        ("from typing import Any, TypeAlias\nRow: TypeAlias = Any", "Row"),
        ("from typing import Any, cast\ndef f(x: object) -> None:\n    cast(Any, x)", "f"),
    ],
)
def test_the_check_sees_any_wherever_it_is_spelled(source, where):
    assert [q for _, q in any_uses(source)] == [where]


def test_the_check_leaves_other_anys_alone():
    source = (
        "from typing import Protocol\n"
        'class Adapter(Protocol):\n    """Any failure."""\n'
        "def f(x: object) -> dict[str, object]: ...\n"
    )
    assert any_uses(source) == []
