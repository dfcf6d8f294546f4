"""Split the locked dependencies: `requirements.lock` is what production runs, `requirements-dev.lock` adds the tools.

Run in a virtualenv that has the project's `[dev]` extra installed (`make lock` makes one). The runtime lock is the
dependency closure of `[project] dependencies` in `pyproject.toml`, extras and environment markers followed through
each installed distribution's own metadata, at the versions the dev lock pins; so the image (`Dockerfile`) carries
no test runner, type checker or pretty printer (httpx imports its command-line client, and with it rich and pygments,
whenever they are installed: about 4 MB in every process).

    python scripts/lock.py            # write requirements.lock from requirements-dev.lock and pyproject.toml
    python scripts/lock.py --check    # exit 1 if requirements.lock is not exactly that (the test suite runs it)
"""

import argparse
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
HEADER = "# Runtime dependencies only (scripts/lock.py: the closure of pyproject.toml's, pinned as in requirements-dev.lock)\n"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(requirements: list[str]) -> set[str]:
    """Canonical names of every distribution the given requirements need here, following extras and markers."""
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [Requirement(r) for r in requirements]
    names: set[str] = set()
    while stack:
        req = stack.pop()
        key = (canonical(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue  # a marker-excluded requirement that is not installed here (e.g. Windows-only)
        names.add(key[0])
        for spec in dist.requires or []:
            sub = Requirement(spec)
            wanted = sub.marker is None or any(
                sub.marker.evaluate({"extra": extra}) for extra in (req.extras or {""})
            )
            if wanted:
                stack.append(sub)
    return names


def runtime_lines(dev_lock: str, names: set[str]) -> list[str]:
    lines = []
    for line in dev_lock.splitlines():
        pin = line.strip()
        if pin and not pin.startswith("#") and canonical(re.split(r"[=<>!~\[ ;]", pin)[0]) in names:
            lines.append(pin)
    return lines


def expected_runtime_lock() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = runtime_lines((ROOT / "requirements-dev.lock").read_text(), runtime_closure(deps))
    return HEADER + "".join(f"{line}\n" for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    expected = expected_runtime_lock()
    target = ROOT / "requirements.lock"
    if args.check:
        if target.read_text() != expected:
            print("requirements.lock is not the runtime closure of requirements-dev.lock: run `make lock`")
            return 1
        return 0
    target.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
