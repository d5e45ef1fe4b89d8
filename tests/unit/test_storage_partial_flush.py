"""A flush cut into several SSTables (one per token range) and killed between them: at restart
the commit log must replay what the unfinished part held. Found by a campaign (kill of every
node during a 4 KB-memtable flush: an acknowledged write gone from a replica after restart)."""

from __future__ import annotations

from pathlib import Path

from node.ring import make_partitioner
from node.storage import Cell, Mutation, StorageConfig, StorageEngine, TableOptions
from node.storage.sstable import TOC, component_path
from storage_model import ManualClock

PART = make_partitioner("murmur3")


def _engine(path: Path) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(), ManualClock(), PART.token)  # type: ignore[arg-type]
    e.open()
    return e


def test_a_flush_killed_between_its_parts_replays_the_missing_part(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t", TableOptions())
    e.set_split_points([PART.token(f"split{i}".encode()) for i in range(5)])
    for i in range(200):
        e.apply("ks", "t", Mutation(f"k{i}".encode(), [Cell("v", f"v{i}".encode(), 1000 + i)]))
    t = e._table("ks", "t")
    e._flush_table(t)  # every part written; the commit log's segments not yet discarded
    parts = sorted(r.generation for r in t.sstables)
    assert len(parts) >= 3
    # What a SIGKILL while writing the last part leaves: that part has no TOC (never visible).
    component_path(t.directory, parts[-1], TOC).unlink()
    e.close()
    e2 = _engine(tmp_path)
    for i in range(200):
        p = e2.read("ks", "t", f"k{i}".encode())
        assert p is not None and p.cells["v"].value == f"v{i}".encode(), f"k{i} lost"
    e2.close()
