"""A flipped byte in any SSTable component, or in the commit log tail, is detected and reported."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.storage import Cell, CorruptSSTableError, Mutation, StorageConfig, StorageEngine
from node.storage.errors import AwaitingRepair
from node.storage.commitlog import position_segment
from storage_model import ManualClock

COMPONENTS = ["Data.db", "Index.db", "Summary.db", "Filter.db", "Statistics.db", "Digest.crc32", "TOC.txt"]
KEYS = [b"key%03d" % i for i in range(200)]


def _value(key: bytes, i: int) -> bytes:
    return key + b"-%d" % i


def _fill(path: Path) -> Path:
    e = StorageEngine(path, StorageConfig(), ManualClock())
    e.open()
    e.create_table("ks", "t")
    for key in KEYS:
        e.apply("ks", "t", Mutation(key, [Cell(f"c{i}", _value(key, i), 1) for i in range(3)]))
    e.flush()
    e.close()
    [table_dir] = (path / "data" / "ks").iterdir()
    return table_dir


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_flipped_byte_in_each_sstable_component_is_reported_never_served(
        tmp_path: Path, component: str, where: float, caplog: pytest.LogCaptureFixture) -> None:
    table_dir = _fill(tmp_path)
    target = table_dir / f"1-{component}"
    _flip(target, int(target.stat().st_size * where))
    caplog.set_level(logging.WARNING)
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock())
    e.open()
    found_at_open = bool(e.corrupt_sstables())
    errors = held = 0
    for key in KEYS:
        try:
            p = e.read("ks", "t", key)
        except CorruptSSTableError as exc:
            errors += 1
            assert "1-" in exc.path and str(table_dir) in exc.path
            continue
        except AwaitingRepair:
            held += 1  # the file was quarantined after the first error: reads wait for a repair
            continue
        # Whatever is still served is exactly what was written: never wrong data.
        assert {n: c.value for n, c in p.cells.items()} == {f"c{i}": _value(key, i) for i in range(3)}
    assert errors > 0
    assert any("corrupt SSTable" in r.getMessage() and str(table_dir) in r.getMessage() for r in caplog.records)
    e.apply("ks", "t", Mutation(b"new", [Cell("c", b"v", 2)]))
    if found_at_open:
        # Found at open: the table refuses every read (and scan) until the file is discarded.
        with pytest.raises(CorruptSSTableError):
            e.read("ks", "t", KEYS[0])
        with pytest.raises(CorruptSSTableError):
            list(e.scan("ks", "t"))
        assert e.discard_corrupt("ks", "t")
    else:
        # Found while reading: answered as an error at once, then the file is moved aside and
        # the table refuses reads (one error, then AwaitingRepair: what the file held may be the
        # newest version of any key) until a repair; scans (the repair's own reads) go on.
        assert errors == 1
        with pytest.raises(AwaitingRepair):
            e.read("ks", "t", KEYS[0])
        assert e.quarantined() == [str(tmp_path / "corrupt" / "ks" / "t" / "1-Data.db")]
        assert (tmp_path / "corrupt" / "ks" / "t" / "1-Data.db").exists()
        assert not (table_dir / "1-Data.db").exists()
        assert any("quarantined" in r.getMessage() for r in caplog.records)
        assert "ks.t" in e.held_tables()
        assert list(e.scan("ks", "t"))
        assert e.release_reads() == ["ks.t"]
    assert e.read("ks", "t", b"new").cells["c"].value == b"v"
    assert e.corrupt_sstables() == []
    e.close()


def test_full_verify_finds_a_flipped_data_byte_without_reading_it(tmp_path: Path) -> None:
    table_dir = _fill(tmp_path)
    _flip(table_dir / "1-Data.db", 1234)
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock())
    e.open()
    assert e.verify() == [str(table_dir / "1-Data.db")]
    e.close()


def _log_with_tail(path: Path) -> tuple[Path, int, int]:
    """Engine with 50 logged writes; returns the segment, the last record's start and end offset."""
    e = StorageEngine(path, StorageConfig(), ManualClock())
    e.open()
    e.create_table("ks", "t")
    positions = [e.apply("ks", "t", Mutation(b"k%d" % i, [Cell("c", b"v%d" % i, i)])) for i in range(50)]
    seg_id = position_segment(positions[-1])
    e.close()
    seg = path / "commitlog" / f"CommitLog-{seg_id:016d}.log"
    return seg, positions[-2] & 0xFFFFFFFF, positions[-1] & 0xFFFFFFFF


@pytest.mark.parametrize("damage", ["flip-payload", "flip-header", "torn"])
def test_commit_log_tail_damage_is_truncated_and_reported_with_offset(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    seg, start, end = _log_with_tail(tmp_path)
    if damage == "flip-payload":
        _flip(seg, end - 2)
    elif damage == "flip-header":
        _flip(seg, start + 1)
    else:
        seg.write_bytes(seg.read_bytes()[: end - 3])
    caplog.set_level(logging.WARNING)
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock())
    e.open()
    report = e.replay_report
    assert [(p, off) for p, off, _ in report.truncations] == [(str(seg), start)]
    assert any(f"byte offset {start}" in r.getMessage() and str(seg) in r.getMessage() for r in caplog.records)
    assert seg.stat().st_size == start  # the bad tail is cut off, not silently accepted
    assert e.read("ks", "t", b"k49") is None
    assert e.read("ks", "t", b"k48").cells["c"].value == b"v48"
    e.close()
