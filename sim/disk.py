"""The simulated disk: real files in the run directory, fsync modelled, crashes that lose what
was never made durable.

Node code writes its files as usual (node/storage, schema, hints, tokens) and calls
``node.runtime.fsync``/``fdatasync``, which here record how many bytes of which file are durable
instead of waiting for a device. A crash then decides what the node finds on restart:

* ``process`` (a SIGKILL, what ``harness run``'s kill does): every completed write survives,
  since the kernel's page cache outlives the process;
* ``power`` (power loss): each file keeps only the bytes that were fsynced (files are appended
  or written once then renamed in ringlab, so a durable prefix is what survives), a file never
  fsynced is gone, and with ``tear`` the first unsynced write may survive in part.

What is not modelled: directory fsyncs (a rename or unlink is durable at once), reordering of
writes within a file's unsynced tail, and fsync latency (it costs no virtual time).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from node.runtime import System

T = TypeVar("T")

CRASH_MODES = ("process", "power")


class SimSystem(System):
    """Inline "worker threads" and recorded fsyncs for every node of one simulated world."""

    def __init__(self, trace: Any = None) -> None:
        # (device, inode) -> bytes of that file known durable; inodes survive renames.
        self.synced: dict[tuple[int, int], int] = {}
        self.trace = trace
        self.fsyncs = 0

    async def offload(self, fn: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter | None = None) -> T:
        """Run ``fn`` inline: one thread keeps the run deterministic (the sim has no wall time)."""
        await trio.lowlevel.checkpoint()
        return fn(*args)

    def fsync(self, fd: int) -> None:
        """Record the file's current size as durable (a directory fsync changes nothing)."""
        st = os.fstat(fd)
        if not _is_dir(st.st_mode):
            self.synced[(st.st_dev, st.st_ino)] = st.st_size
            self.fsyncs += 1

    def fdatasync(self, fd: int) -> None:
        """The same as fsync here: the size is what makes appended records readable."""
        self.fsync(fd)

    def durable_image(self, root: Path) -> dict[Path, int]:
        """For each file under ``root``: how many of its bytes are durable now."""
        out: dict[Path, int] = {}
        for path in _files(root):
            st = path.stat()
            out[path] = self.synced.get((st.st_dev, st.st_ino), -1)
        return out

    def crash(self, root: Path, image: dict[Path, int], mode: str, tear: Any = None) -> dict[str, Any]:
        """Apply a crash to the files under ``root`` given the durable ``image`` taken at the crash.

        Returns counts (files removed, files truncated, bytes lost) for the node's log.
        """
        stats: dict[str, Any] = {"removed": 0, "truncated": 0, "bytes_lost": 0}
        removed: list[str] = []
        if mode == "process":
            return stats
        for path in _files(root):
            size = path.stat().st_size
            durable = image.get(path, -1)
            if durable < 0:
                # Never fsynced (or created after the crash by a shutdown path that a real
                # crash would not have run): the data, and in ringlab's model the name, is gone.
                path.unlink()
                removed.append(str(path.relative_to(root)))
                stats["removed"] += 1
                stats["bytes_lost"] += size
                continue
            if size > durable:
                keep = durable
                if tear is not None:
                    # A torn write: part of the unsynced tail reached the platter.
                    keep += tear.randrange(0, size - durable + 1)
                with open(path, "r+b") as f:
                    f.truncate(keep)
                st = path.stat()
                self.synced[(st.st_dev, st.st_ino)] = keep
                stats["truncated"] += 1
                stats["bytes_lost"] += size - keep
        stats["removed_files"] = removed
        if self.trace is not None:
            self.trace.add("crash", root.name, stats["removed"], stats["truncated"], stats["bytes_lost"])
        return stats


def _is_dir(mode: int) -> bool:
    import stat

    return stat.S_ISDIR(mode)


def _files(root: Path) -> list[Path]:
    """Every regular file under ``root``, in a fixed order."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())
