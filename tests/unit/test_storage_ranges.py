"""SSTables cut at split points (node/storage/engine.py, docs/storage.md): a flush and a compaction
never write a file that spans a split point, compaction stays within a range, and a whole-file
import is verified and takes a new generation without the source's replay position."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from node.ring import make_partitioner
from node.storage import Cell, Mutation, StorageConfig, StorageEngine, TableOptions
from node.storage.errors import CorruptSSTableError
from node.storage.sstable import component_path
from storage_model import ManualClock

PART = make_partitioner("murmur3")


def _engine(path: Path) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(), ManualClock(), PART.token)  # type: ignore[arg-type]
    e.open()
    e.create_table("ks", "t", TableOptions(compaction_min_threshold=2))
    return e


def _ranges_of(e: StorageEngine) -> list[tuple[int, int]]:
    t = e._table("ks", "t")
    return [(e.range_of(r.first[0]), e.range_of(r.last[0])) for r in t.sstables]


def test_flush_and_compaction_cut_files_at_split_points_and_keep_every_value(tmp_path: Path) -> None:
    e = _engine(tmp_path / "a")
    points = [PART.token(f"split{i}".encode()) for i in range(5)]
    e.set_split_points(points)
    for rnd in range(3):
        for i in range(200):
            e.apply("ks", "t", Mutation(f"k{i}".encode(), [Cell("v", f"{rnd}-{i}".encode(), rnd * 1000 + i)]))
        e.flush()
    assert all(lo == hi for lo, hi in _ranges_of(e)), _ranges_of(e)
    used = sorted({e.range_of(PART.token(f"k{i}".encode())) for i in range(200)})
    assert len(used) >= 4 and len(_ranges_of(e)) == 3 * len(used)  # one file per range per flush
    # Background compaction merges within one range at a time.
    result = e.compact("ks", "t")
    assert result is not None and len(result["outputs"]) == 1
    e.compact("ks", "t", major=True)
    assert sorted(lo for lo, _ in _ranges_of(e)) == used and all(lo == hi for lo, hi in _ranges_of(e))
    for i in range(200):
        p = e.read("ks", "t", f"k{i}".encode())
        assert p is not None and p.cells["v"].value == f"2-{i}".encode()
    # A ring change: the old files span the new points; a major compaction cuts them again.
    e.set_split_points(points + [PART.token(b"k7")])
    e.compact("ks", "t", major=True)
    assert all(lo == hi for lo, hi in _ranges_of(e)) and len(_ranges_of(e)) == len(used) + 1
    e.close()


def test_import_refuses_a_damaged_copy_and_takes_a_good_one_with_a_new_generation(tmp_path: Path) -> None:
    src = _engine(tmp_path / "src")
    for i in range(50):
        src.apply("ks", "t", Mutation(f"k{i}".encode(), [Cell("v", b"x" * 100, i)]))
    src.flush()
    reader = src._table("ks", "t").sstables[0]
    assert reader.stats["replay_position"] > 0
    dst = _engine(tmp_path / "dst")
    dst.apply("ks", "t", Mutation(b"local", [Cell("v", b"mine", 1)]))
    dst.flush()
    incoming = tmp_path / "incoming"
    for damage in (True, False):
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        for f in reader.files():
            shutil.copy(f, incoming / f.name)
        if damage:
            data = component_path(incoming, reader.generation, "Data.db")
            raw = bytearray(data.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            data.write_bytes(bytes(raw))
            with pytest.raises(CorruptSSTableError):
                dst.import_sstable("ks", "t", incoming, reader.generation)
            assert dst.read("ks", "t", b"k1") is None
        else:
            gen = dst.import_sstable("ks", "t", incoming, reader.generation)
    assert dst.read("ks", "t", b"k1").cells["v"].value == b"x" * 100  # type: ignore[union-attr]
    imported = next(r for r in dst._table("ks", "t").sstables if r.generation == gen)
    # The source's commit log position would make the target skip its own records at replay.
    assert imported.stats["replay_position"] == 0 and imported.stats["origin"] == "stream"
    dst.close()
    dst = StorageEngine(tmp_path / "dst", StorageConfig(), ManualClock(), PART.token)  # type: ignore[arg-type]
    dst.open()
    assert dst.read("ks", "t", b"local").cells["v"].value == b"mine"  # type: ignore[union-attr]
    assert dst.read("ks", "t", b"k49") is not None
    dst.close()
    src.close()
