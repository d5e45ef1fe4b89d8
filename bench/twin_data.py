"""The same cells written to a storage engine (one flush per SSTable) and to a sqlite3 table,
for the benches that compare the two on equal data (storage_reads.py, storage_compaction.py)."""

from __future__ import annotations

import sqlite3
from typing import Any


def load(engine: Any, db: sqlite3.Connection, mutation: Any, cell: Any, *, cells: int, partitions: int,
         sstables: int, value: bytes) -> None:
    """``cells`` cells over ``partitions`` partitions of ks.t, in ``sstables`` flushed SSTables, and
    the same rows in ``db``'s ``cells`` table. ``mutation`` and ``cell`` are the engine's classes
    (the benches import node/ from the checkout they measure)."""
    for q in range(sstables):
        rows = []
        for i in range(q * cells // sstables, (q + 1) * cells // sstables):
            key, col = b"partition-%06d" % (i % partitions), "c%06d" % (i // partitions)
            engine.apply("ks", "t", mutation(key, [cell(col, value, i)]))
            rows.append((key, col, value, i))
        engine.flush()
        db.executemany("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?)", rows)
        db.commit()
