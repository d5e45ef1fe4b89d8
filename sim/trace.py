"""The trace of one simulation: every connection, message, drop and fault, stamped with virtual time.

Two runs of the same seed and code must produce the same trace; ``harness sim
--check-determinism`` compares their hashes and, when they differ, the first differing line.
"""

from __future__ import annotations

import hashlib
import marshal
from pathlib import Path
from typing import Any

import trio


# Events hashed per batch: the hash is fed a batch of event tuples serialized by marshal (one C
# call; format version 2 has no back-references, so equal events give equal bytes whatever
# objects hold them) instead of a formatted line per event, which cost more than the events.
_BATCH = 4096
_MARSHAL_VERSION = 2


class Trace:
    """An append-only event log with a running hash; keeps the events only when asked to."""

    def __init__(self, keep: bool = False) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.keep = keep
        self._buf: list[tuple[Any, ...]] = []
        self._kept: list[tuple[Any, ...]] = []
        self._count = 0
        # The world clock whose time stamps the events (sim.clock.WorldClock binds itself):
        # reading its attribute costs a tenth of a trio.current_time() call.
        self.clock: Any = None

    def add(self, kind: str, *fields: Any) -> None:
        """Record one event at the current virtual time."""
        clock = self.clock
        if clock is not None:
            now = clock._now
        else:
            try:
                now = trio.current_time()
            except RuntimeError:  # outside a trio run (setup, teardown)
                now = -1.0
        buf = self._buf
        buf.append((now, kind, fields))
        if len(buf) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        buf = self._buf
        if buf:
            self._hash.update(marshal.dumps(buf, _MARSHAL_VERSION))
            self._count += len(buf)
            if self.keep:
                self._kept.extend(buf)
            self._buf = []

    @property
    def count(self) -> int:
        """Events recorded so far."""
        return self._count + len(self._buf)

    def digest(self) -> str:
        """The hash of every event so far."""
        self._flush()
        return self._hash.hexdigest()

    @property
    def lines(self) -> list[str]:
        """The kept events, one line each (empty unless ``keep``)."""
        self._flush()
        return [_line(e) for e in self._kept]

    def write(self, path: Path) -> None:
        """Write the kept events (one per line)."""
        path.write_text("".join(line + "\n" for line in self.lines))


def _line(event: tuple[Any, ...]) -> str:
    now, kind, fields = event
    return f"{now:.6f} {kind} " + " ".join(str(f) for f in fields)


def first_difference(a: list[str], b: list[str]) -> tuple[int, str | None, str | None] | None:
    """The first index where two traces differ and the lines there, or None if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    if len(a) != len(b):
        i = min(len(a), len(b))
        return i, a[i] if i < len(a) else None, b[i] if i < len(b) else None
    return None
