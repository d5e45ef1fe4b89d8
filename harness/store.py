"""The run directory: store/<test-name>/<YYYYmmddTHHMMSS>/ and store/latest pointing at it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEST_FILE = "test.json"
HISTORY_FILE = "history.jsonl"
RESULTS_FILE = "results.json"
LOG_FILE = "harness.log"
REPORT_FILE = "report.html"


def new_run_dir(store: Path, test_name: str, now: float | None = None) -> Path:
    """Create a fresh run directory and point store/latest (and store/<test>/latest) at it."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now if now is not None else time.time()))
    base = store / test_name
    base.mkdir(parents=True, exist_ok=True)
    run = base / stamp
    n = 1
    while True:
        try:
            run.mkdir()
            break
        except FileExistsError:
            n += 1
            run = base / f"{stamp}-{n}"
    _relink(store / "latest", run)
    _relink(base / "latest", run)
    return run


def _relink(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    tmp.replace(link)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(path.read_text())


def runs(store: Path) -> Iterator[Path]:
    """Every run directory under the store, newest first."""
    found = [p.parent for p in store.glob(f"*/*/{TEST_FILE}") if not p.parent.is_symlink()]
    yield from sorted(found, key=lambda p: p.name, reverse=True)
