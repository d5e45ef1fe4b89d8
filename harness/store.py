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


# The lock a running campaign holds in its store: two campaigns in one store would fight over
# `latest`, and on one machine over ports, CPU and each other's fault schedule.
LOCK_FILE = "campaign.lock"
# An empty lock file younger than this is being written by its owner, not stale.
LOCK_WRITE_GRACE_S = 2.0


class StoreBusy(Exception):
    """Another live campaign holds the store's lock; the message names its pid."""


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie or another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreLock:
    """``store/campaign.lock`` holding the running campaign's pid, created exclusively.

    A lock whose pid is no longer running (a campaign killed with SIGKILL, a crashed machine) is
    stale and taken over; one whose pid is alive refuses with :class:`StoreBusy`.
    """

    def __init__(self, store: Path) -> None:
        self.path = store / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        """Take the lock or raise StoreBusy."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # a stale lock removed under a racing taker, or being written: try again
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = self.owner()
                if pid is None and self._just_created():
                    time.sleep(0.1)
                    continue  # its owner has created it and not yet written its pid
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise StoreBusy(f"store {self.path.parent} is in use by a running campaign (pid {pid}; "
                                    f"lock {self.path}): wait for it, stop it, or give another --store") from None
                self.path.unlink(missing_ok=True)  # stale: its campaign is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return
        raise StoreBusy(f"store {self.path.parent}: could not take the lock {self.path}")

    def owner(self) -> int | None:
        """The pid in the lock file (None when it is missing or unreadable: treated as stale)."""
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _just_created(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime < LOCK_WRITE_GRACE_S
        except OSError:
            return False

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held and self.owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
