"""node/native.py: the mypyc build of scripts/build_native.py is used only for exactly the current
sources, RINGLAB_PURE=1 forces pure Python, and the compiled modules' own tests pass both ways."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from node import native

ROOT = Path(__file__).resolve().parents[2]

# The compiled modules' own unit tests: the whole suite runs in whichever mode this process has,
# these run again in the other one (when a usable build exists).
OWN_TESTS = [
    "tests/unit/test_protocol.py",
    "tests/unit/test_fast_put.py",
    "tests/unit/test_fast_writes.py",
    "tests/unit/test_fast_reads.py",
    "tests/unit/test_write_batching.py",
    "tests/unit/test_coordinator.py",
    "tests/unit/test_outbox.py",
    "tests/unit/test_client_waits.py",
    "tests/unit/test_ring.py",
    "tests/unit/test_replica_left.py",
    "tests/unit/test_simspeed_node_paths.py",
    "tests/unit/test_storage_engine.py",
    "tests/unit/test_plain_mutations.py",
    "tests/unit/test_durability_hints.py",
    "tests/unit/test_disk_fault_fixes.py",
]

_PROBE = """
import json, sys
import node.native as n
mods = {name: __import__(name, fromlist=["_"]) for name in sys.argv[1:]}
print(json.dumps({name: n.compiled(m) for name, m in mods.items()}
                 | {"planted": getattr(mods["node.protocol"], "PLANTED", None)}))
"""


def _module_names() -> list[str]:
    """The compiled modules, as the build's manifest lists their sources."""
    sources = json.loads((native.BUILD_DIR / native.MANIFEST).read_text())["sources"]
    return [m[: -len(".py")].replace("/", ".") for m in sources]


def _probe(tree: Path, pure: bool = False) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    env["PYTHONPATH"] = str(tree)
    if pure:
        env[native.PURE_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", _PROBE, *_module_names()], env=env, cwd=tree,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _fake_build(tmp_path: Path) -> Path:
    """A tree with one 'compiled' module: a manifest over node/m.py and a file standing for its .so."""
    (tmp_path / "node" / "_native" / "node").mkdir(parents=True)
    src = tmp_path / "node" / "m.py"
    src.write_text("X = 1\n")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    (tmp_path / "node" / "_native" / "node" / f"m{suffix}").write_bytes(b"")
    manifest = {"sources": {"node/m.py": hashlib.sha256(src.read_bytes()).hexdigest()},
                "key": {"ext_suffix": suffix}, "files": {"node.m": f"node/m{suffix}"}}
    (tmp_path / "node" / "_native" / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "node" / "_native"


def test_a_build_of_the_current_sources_is_usable(tmp_path: Path) -> None:
    build = _fake_build(tmp_path)
    files = native.usable_build(build)
    assert files is not None and set(files) == {"node.m"}


def test_an_edited_source_makes_the_build_unusable(tmp_path: Path) -> None:
    build = _fake_build(tmp_path)
    (tmp_path / "node" / "m.py").write_text("X = 2  # a planted bug\n")
    assert native.usable_build(build) is None


def test_a_missing_source_file_or_manifest_makes_the_build_unusable(tmp_path: Path) -> None:
    build = _fake_build(tmp_path)
    (tmp_path / "node" / "m.py").unlink()
    assert native.usable_build(build) is None
    build = _fake_build(tmp_path / "b")
    next((build / "node").iterdir()).unlink()
    assert native.usable_build(build) is None
    (build / "manifest.json").unlink()
    assert native.usable_build(build) is None


def test_another_interpreters_build_is_unusable(tmp_path: Path) -> None:
    build = _fake_build(tmp_path)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["key"]["ext_suffix"] = ".cpython-39-x86_64-linux-gnu.so"
    (build / "manifest.json").write_text(json.dumps(manifest))
    assert native.usable_build(build) is None


def test_pure_is_forced_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, pure in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(native.PURE_ENV, value)
        assert native.pure_forced() is pure
    monkeypatch.delenv(native.PURE_ENV)
    assert not native.pure_forced()


needs_build = pytest.mark.skipif(native.usable_build() is None,
                                 reason="no native build of the current sources (scripts/build_native.py)")


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "node", tree / "node", ignore=shutil.ignore_patterns("__pycache__"))
    return tree


@needs_build
def test_a_copy_of_the_tree_uses_its_build_and_pure_python_when_asked(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    compiled = _probe(tree)
    assert all(compiled[name] for name in _module_names())
    pure = _probe(tree, pure=True)
    assert not any(pure[name] for name in _module_names())


@needs_build
@pytest.mark.parametrize("edited", ["node/protocol.py", "node/cluster/messaging.py", "node/storage/engine.py"])
def test_an_edited_module_takes_every_module_back_to_pure_python(tmp_path: Path, edited: str) -> None:
    """A planted-bug patch on any compiled module must run: the stale build is not used at all
    (its modules call each other natively, so it is all or nothing)."""
    tree = _copy_tree(tmp_path)
    if edited == "node/protocol.py":
        with open(tree / edited, "a") as f:
            f.write("\nPLANTED = 1\n")
    else:
        with open(tree / edited, "a") as f:
            f.write("\n# edited\n")
    got = _probe(tree)
    assert not any(got[name] for name in _module_names())
    assert got["planted"] == (1 if edited == "node/protocol.py" else None)


@needs_build
def test_the_compiled_modules_own_tests_pass_in_the_other_mode() -> None:
    """This process runs the suite compiled (or pure, under RINGLAB_PURE=1); run the compiled
    modules' own tests again the other way."""
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if not native.pure_forced():
        env[native.PURE_ENV] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *OWN_TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_coverage_runs_measure_the_pure_python_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    # coverage.py cannot trace compiled modules: a --coverage node (and a sim worker) switch to
    # the .py sources before importing node, by the same variable node/native.py reads.
    from harness import campaign_coverage

    assert campaign_coverage.PURE_ENV == native.PURE_ENV
    monkeypatch.setenv(native.PURE_ENV, "0")  # undone after the test, as the next line's change
    assert not native.pure_forced()
    campaign_coverage.measure_pure_python()
    assert native.pure_forced()
