"""Small state files written atomically and durably: tokens, peers, bootstrap and removal state.

A node's own identity on the ring (``tokens.json``), what it knew of the ring (``peers.json``)
and the progress of a membership change must survive a power loss as the commit log does: a
node that comes back from a crash with new tokens, or none, answers for ranges it never held.
Each write goes to a temporary file, is fsynced, renamed over the old one, and the directory is
fsynced so the rename itself is durable. fsync goes through node/runtime.py, so the simulator's
disk knows what became durable.
"""

from __future__ import annotations

import os
from pathlib import Path

from node.runtime import fsync


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new contents."""
    tmp = path.with_name(path.name + ".tmp")
    raw = data.encode() if isinstance(data, str) else data
    with open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
