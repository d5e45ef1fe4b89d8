"""The trace of one simulation: every connection, message, drop and fault, stamped with virtual time.

Two runs of the same seed and code must produce the same trace; ``harness sim
--check-determinism`` compares their hashes and, when they differ, the first differing line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import trio


class Trace:
    """An append-only event log with a running hash; keeps the lines only when asked to."""

    def __init__(self, keep: bool = False) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.keep = keep
        self.lines: list[str] = []
        self.count = 0

    def add(self, kind: str, *fields: Any) -> None:
        """Record one event at the current virtual time."""
        try:
            now = trio.current_time()
        except RuntimeError:  # outside a trio run (setup, teardown)
            now = -1.0
        line = f"{now:.6f} {kind} " + " ".join(str(f) for f in fields)
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.count += 1
        if self.keep:
            self.lines.append(line)

    def digest(self) -> str:
        """The hash of every event so far."""
        return self._hash.hexdigest()

    def write(self, path: Path) -> None:
        """Write the kept lines (one event per line)."""
        path.write_text("".join(line + "\n" for line in self.lines))


def first_difference(a: list[str], b: list[str]) -> tuple[int, str | None, str | None] | None:
    """The first index where two traces differ and the lines there, or None if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    if len(a) != len(b):
        i = min(len(a), len(b))
        return i, a[i] if i < len(a) else None, b[i] if i < len(b) else None
    return None
