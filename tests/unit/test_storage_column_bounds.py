"""SSTable column bounds (least and greatest column name, only for files without partition or range
tombstones): what the writers record, and that named reads which skip files by them stay right."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgpack
import pytest

from node.runtime import Clock
from node.storage import Cell, CorruptSSTableError, Mutation, RangeTombstone, StorageConfig, StorageEngine, compaction
from node.storage.slicing import slice_sstable
from storage_model import ManualClock


def _engine(path: Path, clock: Any = None) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(), clock or Clock())
    e.open()
    e.create_table("ks", "t")
    return e


def _readers(e: StorageEngine) -> list[Any]:
    return e._tables[("ks", "t")].sstables


def _bounds(e: StorageEngine) -> list[Any]:
    """Column bounds of each SSTable, oldest first."""
    return [r.column_bounds for r in reversed(_readers(e))]


def test_bounds_cover_every_cell_name_tombstones_included(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.apply("ks", "t", Mutation(b"a", [Cell("m", b"1", 1), Cell("d", b"2", 1)]))
    e.apply("ks", "t", Mutation(b"b", [Cell("x", None, 2, None, 5)]))  # a cell tombstone is a name too
    e.flush()
    assert _bounds(e) == [("d", "x")]
    e.close()
    reopened = StorageEngine(tmp_path, StorageConfig(), Clock())
    reopened.open()
    assert _bounds(reopened) == [("d", "x")]  # from Statistics.db
    reopened.close()


@pytest.mark.parametrize("deletion", ["partition", "range"])
def test_a_file_with_a_row_or_range_delete_has_no_bounds(tmp_path: Path, deletion: str) -> None:
    e = _engine(tmp_path)
    e.apply("ks", "t", Mutation(b"a", [Cell("m", b"1", 1)]))
    if deletion == "partition":
        e.apply("ks", "t", Mutation(b"b", [], partition_tombstone=3, partition_deletion_time=10))
    else:
        e.apply("ks", "t", Mutation(b"b", [Cell("q", b"v", 4)], range_tombstones=[RangeTombstone("s:", 3, 10)]))
    e.flush()
    assert _bounds(e) == [None]
    e.close()


def test_named_reads_skip_out_of_bounds_files_and_still_see_newer_deletions(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.apply("ks", "t", Mutation(b"k", [Cell("a", b"old-a", 10), Cell("b", b"old-b", 10)]))
    e.apply("ks", "t", Mutation(b"j", [Cell("a", b"j-a", 10)]))
    e.flush()
    e.apply("ks", "t", Mutation(b"k", [Cell("y", b"y", 20), Cell("z", b"z", 20)]))
    e.flush()
    # A newer file with a row delete of j and a cell tombstone of k's "b": both have names or no
    # bounds, so the reads below must visit it.
    e.apply("ks", "t", Mutation(b"j", [Cell("q", b"q", 40)], partition_tombstone=30, partition_deletion_time=1))
    e.apply("ks", "t", Mutation(b"k", [Cell("b", None, 30, None, 1)]))
    e.flush()
    assert _bounds(e) == [("a", "b"), ("y", "z"), None]
    for columns in (["a"], ["a", "b"], ["b", "z"], ["a", "z"], ["m"]):
        got = e.read("ks", "t", b"k", columns=columns)
        want = {c: v for c, v in {"a": b"old-a", "z": b"z"}.items() if c in columns}
        assert got is not None or not want
        live = {n: c.value for n, c in got.cells.items() if c.value is not None} if got else {}
        assert live == want, columns
    assert e.read("ks", "t", b"k", columns=["b"]).cells["b"].value is None  # the tombstone, kept
    got = e.read("ks", "t", b"j", columns=["a"])
    assert got is not None and got.partition_tombstone == 30 and not got.cells  # deleted by the row delete
    e.close()


def test_a_skipped_file_is_not_read_at_all(tmp_path: Path) -> None:
    """A damaged record header in the out-of-bounds file goes unseen by a read it cannot answer (as
    a bloom filter's "absent" skips a file); a read that needs the file still finds the damage."""
    e = _engine(tmp_path)
    e.apply("ks", "t", Mutation(b"k", [Cell("a", b"A", 30)]))  # newest data, so visited first
    e.flush()
    e.apply("ks", "t", Mutation(b"k", [Cell("y", b"Y", 20)]))
    e.flush()
    damaged = _readers(e)[-1]
    assert damaged.column_bounds == ("a", "a")
    e.close()
    data = bytearray(damaged.data_path.read_bytes())
    data[16 + 2] ^= 0xFF  # inside the one record's header
    damaged.data_path.write_bytes(bytes(data))
    e = StorageEngine(tmp_path, StorageConfig(), Clock())
    e.open()
    assert e.read("ks", "t", b"k", columns=["y"]).cells["y"].value == b"Y"
    with pytest.raises(CorruptSSTableError, match="header checksum mismatch"):
        e.read("ks", "t", b"k", columns=["a"])
    assert [Path(q).name for q in e.quarantined()] == [damaged.data_path.name]
    e.release_reads("ks", "t")  # what a scrub's repair does once the table is whole again
    assert e.read("ks", "t", b"k", columns=["y", "a"]).cells.keys() == {"y"}
    e.close()


def _appends(path: Path) -> None:
    """Four SSTables of appended columns (one with a cell tombstone), no row or range deletes."""
    e = _engine(path, ManualClock())
    for rnd in range(4):
        for p in range(30):
            cells = [Cell(f"r{rnd}-c{j}", b"v%d" % j, rnd * 100 + j) for j in range(1 + p % 4)]
            if p == 7 and rnd == 2:
                cells.append(Cell(f"r{rnd}-dead", None, rnd * 100, None, 1))
            e.apply("ks", "t", Mutation(b"p%03d" % p, cells))
        e.flush()
    e.close()


def test_both_compaction_paths_write_the_same_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _appends(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    outputs = []
    for which in ("a", "b"):
        if which == "b":
            monkeypatch.setattr(compaction, "_raw_merge", lambda group: None)
        e = StorageEngine(tmp_path / which, StorageConfig(), ManualClock())
        e.open()
        e.compact("ks", "t", major=True)
        (r,) = _readers(e)
        outputs.append((r.column_bounds, r.data_path.read_bytes()))
        e.close()
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == ("r0-c0", "r3-c3")


@pytest.mark.parametrize("names", [["a"], [""], ["a", "b", "zz"], ["", "x"]])
def test_first_and_last_name_of_a_names_blob(names: list[str]) -> None:
    blob = "\0" + "\0".join(names) + "\0"
    assert (compaction._first_name(blob), compaction._last_name(blob)) == (names[0], names[-1])


def test_a_slice_carries_its_parents_bounds(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    for p in range(100):
        e.apply("ks", "t", Mutation(b"p%03d" % p, [Cell("c%d" % (p % 7), b"v", p + 1)]))
    e.flush()
    (r,) = _readers(e)
    sl = slice_sstable(r, b"p010", b"p020", 0.01)
    assert sl is not None
    assert msgpack.unpackb(sl.blobs["Statistics.db"])["column_bounds"] == ["c0", "c6"]
    e.close()
