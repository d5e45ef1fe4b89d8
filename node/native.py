"""Use node/_native/'s mypyc build of the hot modules, but only of exactly the current sources.

scripts/build_native.py compiles a few pure modules (node/protocol.py, the cells, the memtable…)
and records each source's sha256 in node/_native/manifest.json. At `import node`, :func:`install`
re-hashes those sources; if every one matches (and the interpreter's extension suffix is the
build's), a finder placed first on ``sys.meta_path`` loads those modules from the build, else the
ordinary .py files load. The build is all or nothing because its modules call each other natively.
So an edited source (a planted-bug patch, a fix in progress) can never be shadowed by a stale
build, and ``RINGLAB_PURE=1`` forces pure Python everywhere (child processes inherit it).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

PURE_ENV = "RINGLAB_PURE"
# Next to this file; git-ignored, written only by scripts/build_native.py.
BUILD_DIR = Path(__file__).resolve().parent / "_native"
MANIFEST = "manifest.json"


class NativeFinder:
    """A meta-path finder serving the build's extension modules by their import names."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        """The build's spec for ``name``, or None (the ordinary finders go on)."""
        file = self.files.get(name)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, str(file))
        return importlib.util.spec_from_file_location(name, str(file), loader=loader)


def pure_forced() -> bool:
    """True if RINGLAB_PURE asks for pure Python (any value but '', '0')."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def usable_build(build_dir: Path = BUILD_DIR) -> dict[str, Path] | None:
    """The build's files by module name if it was compiled from exactly the current sources."""
    try:
        manifest: dict[str, Any] = json.loads((build_dir / MANIFEST).read_text())
        if manifest["key"]["ext_suffix"] != sysconfig.get_config_var("EXT_SUFFIX"):
            return None
        root = build_dir.parents[1]
        for rel, digest in manifest["sources"].items():
            if hashlib.sha256((root / rel).read_bytes()).hexdigest() != digest:
                return None
        files = {name: build_dir / rel for name, rel in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all(f.is_file() for f in files.values()):
        return None
    return files


def install() -> bool:
    """Put the build's finder first on sys.meta_path when it may be used; True if it was."""
    if any(isinstance(f, NativeFinder) for f in sys.meta_path):
        return True
    if pure_forced():
        return False
    files = usable_build()
    if not files:
        return False
    sys.meta_path.insert(0, NativeFinder(files))
    return True


def compiled(module: ModuleType) -> bool:
    """True if ``module`` was loaded from the native build (not its .py source)."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)
