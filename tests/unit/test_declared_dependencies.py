"""What the code imports is what pyproject.toml declares (issue 18: jinja2 was declared and never
imported, requests imported but only there through another package): the packages' third-party
imports are runtime dependencies, the tests' and benchmarks' are runtime or test extras, and every
declared runtime dependency is imported somewhere."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("node", "harness", "nemesis", "checkers", "sim")
# Imports of optional tools a benchmark asks the user to install by hand (README: py-spy is run
# as a program, not imported) would go here; none is imported today.
NOT_DECLARED: frozenset[str] = frozenset()


def _dist(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports(paths: list[Path]) -> set[str]:
    """Top-level third-party modules imported anywhere in ``paths`` (at any depth of the code)."""
    # Tests and benchmarks also import their siblings by plain name (conftest, tests/unit/echo.py).
    local = set(PACKAGES) | {"tests", "bench"} | {p.stem for p in paths} | {p.parent.name for p in paths}
    out = set()
    for path in paths:
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module] if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                    out.add(top)
    return out


def _distributions(modules: set[str]) -> set[str]:
    """The installed distributions providing ``modules`` (a module nobody provides is named as is)."""
    provided = importlib.metadata.packages_distributions()
    return {d.lower().replace("_", "-") for m in modules for d in provided.get(m, [m])}


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return ({_dist(r) for r in project["dependencies"]},
            {_dist(r) for r in project["optional-dependencies"]["test"]})


def test_the_packages_import_only_runtime_dependencies_and_use_each() -> None:
    runtime, _ = _declared()
    used = _distributions(_imports([p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]))
    assert used - NOT_DECLARED <= runtime, sorted(used - runtime)
    assert runtime <= used, f"declared but never imported: {sorted(runtime - used)}"
    assert "jinja2" not in runtime


def test_tests_and_benchmarks_import_only_declared_dependencies() -> None:
    runtime, test = _declared()
    files = list((REPO / "tests").rglob("*.py")) + list((REPO / "bench").rglob("*.py"))
    used = _distributions(_imports(files))
    assert used - NOT_DECLARED <= runtime | test, sorted(used - runtime - test)
