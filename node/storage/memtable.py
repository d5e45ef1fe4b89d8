"""The memtable: one table's recent writes in memory, a dict per partition, sorted on demand.

A dict per partition makes each write O(1); sorting happens once per flush (and per scan, cached
until the next new key), which is cheaper in Python than keeping a balanced structure sorted on
every write. Not thread-safe on its own: the engine serializes writers with its write lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cells import Cell, Mutation, Partition, RangeTombstone, reconcile

# Rough per-cell overhead of a Cell object plus its dict slot, so the flush threshold tracks real
# memory rather than just payload bytes.
CELL_OVERHEAD_BYTES = 120
PARTITION_OVERHEAD_BYTES = 200


class MemPartition:
    """The mutable in-memory version of one partition."""

    __slots__ = ("key", "cells", "pt", "pdt", "rts")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.cells: dict[str, Cell] = {}
        self.pt: int | None = None
        self.pdt: int | None = None
        self.rts: dict[str, RangeTombstone] = {}

    def snapshot(self) -> Partition:
        """An independent, normalized :class:`Partition` copy."""
        return Partition(self.key, dict(self.cells), self.pt, self.pdt, dict(self.rts)).normalized()


class Memtable:
    """Writes of one table since its last flush."""

    def __init__(self, sort_key: Callable[[bytes], Any]) -> None:
        self._sort_key = sort_key
        self.parts: dict[bytes, MemPartition] = {}
        self.bytes = 0
        self.cells = 0
        self.min_timestamp: int | None = None
        self.max_timestamp: int | None = None
        self._sorted: list[bytes] | None = None
        self._sorted_sks: list[Any] = []
        # Commit log position at which this memtable stopped taking writes (set by the engine).
        self.switch_position: int | None = None

    def __len__(self) -> int:
        return len(self.parts)

    def _note_ts(self, ts: int) -> None:
        if self.min_timestamp is None or ts < self.min_timestamp:
            self.min_timestamp = ts
        if self.max_timestamp is None or ts > self.max_timestamp:
            self.max_timestamp = ts

    def apply(self, m: Mutation) -> None:
        """Merge one (validated) mutation in."""
        part = self.parts.get(m.key)
        if part is None:
            part = self.parts[m.key] = MemPartition(m.key)
            self.bytes += PARTITION_OVERHEAD_BYTES + len(m.key)
            self._sorted = None
        cells = part.cells
        added = 0
        lo = hi = None
        for c in m.cells:
            old = cells.get(c.name)
            if old is None:
                cells[c.name] = c
                added += CELL_OVERHEAD_BYTES + len(c.name) + (len(c.value) if c.value is not None else 0)
                self.cells += 1
            elif c.timestamp > old.timestamp or (c.timestamp == old.timestamp and reconcile(old, c) is c):
                cells[c.name] = c
                added += (len(c.value) if c.value is not None else 0) - (len(old.value) if old.value is not None else 0)
            ts = c.timestamp
            if lo is None or ts < lo:
                lo = ts
            if hi is None or ts > hi:
                hi = ts
        if lo is not None:
            # _note_ts inlined for the common write of cells only (two calls per write showed in
            # the write path's profile).
            if self.min_timestamp is None or lo < self.min_timestamp:
                self.min_timestamp = lo
            if self.max_timestamp is None or hi > self.max_timestamp:  # type: ignore[operator]
                self.max_timestamp = hi
        if m.partition_tombstone is not None:
            self._note_ts(m.partition_tombstone)
            if part.pt is None or m.partition_tombstone > part.pt:
                part.pt, part.pdt = m.partition_tombstone, m.partition_deletion_time
                # Drop what the row delete shadows now: it can never be read again.
                for name in [n for n, c in cells.items() if c.timestamp <= part.pt]:
                    del cells[name]
            elif m.partition_tombstone == part.pt:
                part.pdt = max(part.pdt or 0, m.partition_deletion_time or 0)
        for rt in m.range_tombstones:
            self._note_ts(rt.timestamp)
            old_rt = part.rts.get(rt.prefix)
            if old_rt is None:
                part.rts[rt.prefix] = rt
                added += CELL_OVERHEAD_BYTES + len(rt.prefix)
            elif rt.timestamp > old_rt.timestamp or (
                rt.timestamp == old_rt.timestamp and (rt.local_deletion_time or 0) > (old_rt.local_deletion_time or 0)
            ):
                part.rts[rt.prefix] = rt
        self.bytes += added

    def get(self, key: bytes) -> Partition | None:
        """A copy of one partition, or ``None``."""
        part = self.parts.get(key)
        return part.snapshot() if part is not None else None

    def sorted_keys(self) -> tuple[list[Any], list[bytes]]:
        """Sort keys and partition keys in ``(sort_key(key), key)`` order (cached until a new key)."""
        if self._sorted is None:
            sk = self._sort_key
            pairs = sorted((sk(k), k) for k in self.parts)
            self._sorted_sks = [p[0] for p in pairs]
            self._sorted = [p[1] for p in pairs]
        return self._sorted_sks, self._sorted
