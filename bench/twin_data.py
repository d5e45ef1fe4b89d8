"""The same cells written to a storage engine (one flush per SSTable) and to a sqlite3 table,
for the benches that compare the two on equal data (storage_reads.py, storage_compaction.py)."""

from __future__ import annotations

import sqlite3
from typing import Any


def load(engine: Any, db: sqlite3.Connection, mutation: Any, cell: Any, *, cells: int, partitions: int,
         sstables: int, value: bytes, interleave: bool = False) -> None:
    """``cells`` cells over ``partitions`` partitions of ks.t, in ``sstables`` flushed SSTables, and
    the same rows in ``db``'s ``cells`` table. ``mutation`` and ``cell`` are the engine's classes
    (the benches import node/ from the checkout they measure).

    Cell ``i`` is column ``i // partitions`` of partition ``i % partitions``, so each SSTable holds
    a run of columns; ``interleave`` renames column ``j`` so that SSTable ``q`` holds every
    ``sstables``-th name from ``q`` instead (each file's names span the whole range)."""
    per_file = max(1, cells // partitions // sstables)
    for q in range(sstables):
        rows = []
        for i in range(q * cells // sstables, (q + 1) * cells // sstables):
            j = i // partitions
            if interleave:
                j = (j % per_file) * sstables + j // per_file
            key, col = b"partition-%06d" % (i % partitions), "c%06d" % j
            engine.apply("ks", "t", mutation(key, [cell(col, value, i)]))
            rows.append((key, col, value, i))
        engine.flush()
        db.executemany("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?)", rows)
        db.commit()
