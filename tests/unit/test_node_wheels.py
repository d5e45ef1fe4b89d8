"""SSH hosts get only what a node imports, built for the hosts' Python (issue 18: wheels built
under 3.12 did not install on the VMs' 3.11, and every node got 29 packages)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from harness.deploy.wheels import NODE_DISTRIBUTIONS, PythonTarget, dependency_pip_args, node_requirements

REPO = Path(__file__).resolve().parents[2]
# Import names of the node's distributions where they differ from the distribution name.
IMPORT_NAMES = {"trio": "trio", "msgpack": "msgpack", "msgspec": "msgspec", "kazoo": "kazoo", "coverage": "coverage"}


def test_node_imports_nothing_beyond_the_node_distributions() -> None:
    third_party = set()
    for path in (REPO / "node").rglob("*.py"):
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module] if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "node":
                    third_party.add(top)
    assert third_party <= {IMPORT_NAMES[d] for d in NODE_DISTRIBUTIONS}, third_party


def test_requirements_come_from_pyproject_with_their_bounds() -> None:
    reqs = node_requirements(REPO)
    assert sorted(r.split(">")[0].split("<")[0].split("=")[0] for r in reqs) == sorted(NODE_DISTRIBUTIONS)
    assert any(r.startswith("trio") and "<" in r for r in reqs)  # the pin the simulator relies on
    assert not any(r.startswith(("paramiko", "rich", "h11")) for r in reqs)


def test_wheels_for_another_python_are_downloaded_for_it(tmp_path: Path) -> None:
    vm = PythonTarget.parse("3 11 x86_64 glibc 2.36\n")
    assert vm == PythonTarget(3, 11, "x86_64", (2, 36)) and vm.tag() == "cp311-x86_64-glibc2.36"
    here = PythonTarget.local()
    other = vm if vm != here else PythonTarget(3, 12, "x86_64", (2, 36))
    args = dependency_pip_args(other, tmp_path, ["trio"])
    assert args[:4] == ["download", "-q", "-d", str(tmp_path)] and args[-1] == "trio"
    assert "--only-binary=:all:" in args
    assert args[args.index("--python-version") + 1] == f"{other.major}.{other.minor}"
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert "manylinux_2_16_x86_64" not in platforms
    assert dependency_pip_args(here, tmp_path, ["trio"]) == ["wheel", "-q", "-w", str(tmp_path), "trio"]


def test_a_non_glibc_host_gets_no_manylinux_wheels() -> None:
    alpine = PythonTarget.parse("3 12 aarch64  ")
    assert alpine.glibc is None
    args = alpine.pip_download_args()
    assert [args[i + 1] for i, a in enumerate(args) if a == "--platform"] == ["linux_aarch64"]
