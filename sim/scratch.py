"""Where simulated nodes keep their data files during a run: a memory-backed scratch directory.

The nodes' files are real files (sim/disk.py models what survives a crash), and node code
writes many small ones: schema, peers and tokens by write-then-rename, SSTables, the commit log.
On ext4 a rename over an existing file starts writeback of the new file (``auto_da_alloc``),
and unlinking a finished seed's files costs real I/O too: together 6-15% of a sweep seed's
CPU (docs/sim.md, *Speed*). On tmpfs (``/dev/shm``) the same calls never reach a device.
What survives a simulated crash is decided by ``SimSystem``'s record of fsyncs, not by the
device, so the run is the same either way: same trace, same history.

At the end of a run the data that is kept moves into the run directory
(``nodes/<node>/data``), as if it had been written there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Memory-backed directories tried in order (Linux's POSIX shared memory is a tmpfs).
CANDIDATES = ("/dev/shm",)
# Overrides the candidates: a directory for the scratch, or "" to keep data in the run directory.
ENV = "RINGLAB_SIM_SCRATCH"
# A candidate with less room than this is passed over (a container's /dev/shm is often 64 MiB,
# and a node that runs out of disk would be a finding of the run, not of the store): the five
# nodes of a 60 s campaign keep under 1 MB, a sweep runs one seed per core at once, and a long
# or write-heavy campaign keeps more.
MIN_FREE_BYTES = 256 << 20


def scratch_base() -> Path | None:
    """A writable memory-backed directory for node data, or None (then data stays in the run dir)."""
    chosen = os.environ.get(ENV)
    candidates = (chosen,) if chosen is not None else CANDIDATES
    for c in candidates:
        if c and os.path.isdir(c) and os.access(c, os.W_OK | os.X_OK) and _free_bytes(c) >= MIN_FREE_BYTES:
            return Path(c)
    return None


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def make_scratch() -> Path | None:
    """A fresh scratch directory for one run's node data (the caller removes it), or None."""
    base = scratch_base()
    if base is None:
        return None
    return Path(tempfile.mkdtemp(prefix="ringlab-sim-", dir=base))


def move_into(scratch: Path, nodes_dir: Path) -> None:
    """Move each node's data (``scratch/<node>/data``) to ``nodes_dir/<node>/data``."""
    for node in sorted(p for p in scratch.iterdir() if p.is_dir()):
        src = node / "data"
        if src.is_dir():
            dst = nodes_dir / node.name / "data"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))


def remove(scratch: Path) -> None:
    """Delete a scratch directory and everything in it."""
    shutil.rmtree(scratch, ignore_errors=True)
