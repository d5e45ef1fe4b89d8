"""Compile the node's hottest modules with mypyc into node/_native/ (optional; pure Python otherwise).

    .venv/bin/python scripts/build_native.py [--quiet] [--jobs 2]

Each module in MODULES keeps its pure-Python source as the reference: node/native.py loads the
compiled build only when every listed source still hashes to what this script compiled (an edited
node/*.py — a planted-bug patch, a fix in progress — silently takes the pure path again), and
RINGLAB_PURE=1 forces the pure path. A failed build is never an error: it prints one warning line,
leaves no build behind, and the node runs pure Python. `make setup`, `make run` and `make test` run
this when the build is missing or stale.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "node" / "_native"
MANIFEST = "manifest.json"
# mypyc compiles the modules below as one group, so they call each other natively; node/native.py
# takes all of them or none. Order does not matter. The write path's modules (docs/performance.md,
# fifth round): codec, MAC, timing wheels, coordinator, messaging; their async functions run under
# Trio compiled too. The sixth round added the node process (server), the client, the storage
# engine with its memtable and commit log, hints and gossip. Compiled code enforces annotations at
# run time, so a value not yet validated is read as Any (the engine's validation still names a str
# value or a bool timestamp), and what tests patch or stub sits behind a seam that exists in both
# modes. Left out: node/storage/cells.py (its fields carry unvalidated input until the engine checks
# them), sstable.py (the engine's _CorruptSSTable stands in for its reader), files.py (tests patch
# DiskFault.check), ring.py (tests pass ring stubs). A compiled class cannot be subclassed by an
# interpreted one, nor subclass ``bytes``, nor have its methods patched (node/interpreted.py holds
# what must stay interpreted).
MODULES = [
    "node/protocol.py",
    "node/murmur3.py",
    "node/deadlines.py",
    "node/storage/bloom.py",
    "node/cluster/auth.py",
    "node/fast_writes.py",
    "node/coordinator.py",
    "node/outbox.py",
    "node/cluster/messaging.py",
    "node/server.py",
    "node/client.py",
    "node/storage/memtable.py",
    "node/storage/engine.py",
    "node/storage/commitlog.py",
    "node/hints.py",
    "node/cluster/gossip.py",
]
# One shared library for the group (its import name; node/native.py serves it from node/_native/).
GROUP = "ringlab_native"
# -O2: within a few % of -O3 for this code and a faster gcc on a 2-core machine.
OPT_LEVEL = "2"
# A build that takes longer than this is abandoned (pure Python is used).
TIMEOUT_S = 300


def source_hashes(root: Path = ROOT) -> dict[str, str]:
    """sha256 of each compiled module's source, by path relative to the tree."""
    return {m: hashlib.sha256((root / m).read_bytes()).hexdigest() for m in MODULES}


def build_key() -> dict[str, str]:
    """What else a build depends on: the interpreter's ABI and the compiler's version."""
    import mypy.version
    return {"ext_suffix": sysconfig.get_config_var("EXT_SUFFIX") or "", "mypy": mypy.version.__version__,
            "opt_level": OPT_LEVEL, "group": GROUP}


def is_current() -> bool:
    """True if node/_native/ holds a build of exactly the current sources."""
    try:
        manifest = json.loads((OUT / MANIFEST).read_text())
        return manifest["sources"] == source_hashes() and manifest["key"] == build_key()
    except (OSError, ValueError, KeyError, ImportError):
        return False


_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
paths = sys.argv[1:sys.argv.index("--")]
sys.argv = [sys.argv[0]] + sys.argv[sys.argv.index("--") + 1:]
setup(name="ringlab-native", ext_modules=mypycify(
    ["--ignore-missing-imports", "--follow-imports=silent", *paths],
    opt_level={opt!r}, group_name={group!r}, multi_file=True))
"""


def _first_error(output: str, returncode: int) -> str:
    """The line of a failed build's output that says what failed (a compiler's command line is
    not it: it holds -Werror)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        if ": error" in ln or ln.startswith(("error:", "Error:")) or "Error: " in ln:
            return ln[:300]
    return (lines[-1][:300] + f" (exit {returncode})") if lines else f"exit {returncode}"


def build(jobs: int, quiet: bool) -> Path:
    """Compile MODULES into a fresh directory and return it (raises on failure, leaving nothing)."""
    work = Path(tempfile.mkdtemp(prefix="ringlab-native-"))
    try:
        _compile(work, jobs, quiet)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work


def _compile(work: Path, jobs: int, quiet: bool) -> None:
    hashes = source_hashes()
    out = work / "out"
    setup = work / "setup.py"
    setup.write_text(_SETUP.format(opt=OPT_LEVEL, group=GROUP))
    cmd = [sys.executable, str(setup), *(str(ROOT / m) for m in MODULES), "--",
           "build_ext", "-b", str(out), "-t", str(work / "tmp"), "--parallel", str(jobs)]
    env = dict(os.environ, MYPY_CACHE_DIR=str(ROOT / ".mypy_cache" / "native"))
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=quiet, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(_first_error((proc.stdout or "") + (proc.stderr or ""), proc.returncode))
    suffix = build_key()["ext_suffix"]
    files = {}
    for so in out.rglob("*" + suffix):
        rel = so.relative_to(out)
        files[".".join(rel.parts)[: -len(suffix)]] = str(rel)
    if source_hashes() != hashes:
        raise RuntimeError("a compiled module's source changed during the build")
    (out / MANIFEST).write_text(json.dumps({"sources": hashes, "key": build_key(), "files": files},
                                           indent=1, sort_keys=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quiet", action="store_true", help="no compiler output; one line at the end")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="rebuild even if the build is current")
    ap.add_argument("--clean", action="store_true", help="remove the build (pure Python from then on)")
    args = ap.parse_args()
    if args.clean:
        shutil.rmtree(OUT, ignore_errors=True)
        return 0
    if not args.force and is_current():
        if not args.quiet:
            print("native build is current")
        return 0
    shutil.rmtree(OUT, ignore_errors=True)  # a stale build is never left behind a failed one
    try:
        work = build(args.jobs, args.quiet)
    except Exception as exc:  # any failure: warn once, run pure Python
        print(f"warning: native build failed, the node runs pure Python ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 0
    try:
        shutil.move(str(work / "out"), str(OUT))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"native build: {len(MODULES)} modules compiled into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
