"""A failing data disk (the disk nemesis's switch, ``disk = data``): flushes and compactions are
refused and keep what they would have written; with EIO, reads that need an SSTable fail with a
named error and nothing is quarantined; healed, the same engine flushes, compacts and reads again.
And a data file damaged under a running engine is quarantined on read and its table's reads held."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.storage import Cell, CorruptSSTableError, Mutation, StorageConfig, StorageEngine
from node.storage.errors import AwaitingRepair, DiskFull, StorageFailure
from node.storage.files import disk_admin
from storage_model import ManualClock


def _engine(path: Path) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(disk_faults=True), ManualClock())
    e.open()
    e.create_table("ks", "t")
    return e


def _put(e: StorageEngine, key: bytes, value: bytes, ts: int = 1) -> None:
    e.apply("ks", "t", Mutation(key, [Cell("c", value, ts)]))


def _value(e: StorageEngine, key: bytes) -> bytes | None:
    p = e.read("ks", "t", key)
    return None if p is None else p.cells["c"].value


def test_a_full_data_disk_refuses_flushes_keeps_the_memtable_and_flushes_once_healed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    e = _engine(tmp_path)
    _put(e, b"a", b"1")
    assert disk_admin(e.files, "fail", "ENOSPC", "data")["disk"] == "data"
    with pytest.raises(DiskFull, match="flush failed") as exc:
        e.flush()
    assert "disk nemesis" in str(exc.value) and str(tmp_path) in exc.value.path
    assert any("flush of ks.t failed" in r.getMessage() and "stays in memory" in r.getMessage() for r in caplog.records)
    # Nothing half-written is left, the data is served from memory, and writes go on (the commit
    # log is on the other disk).
    assert not list((tmp_path / "data" / "ks").glob("t-*/*-Data.db"))
    _put(e, b"b", b"2")
    assert _value(e, b"a") == b"1" and _value(e, b"b") == b"2"
    assert e.stats()["ks.t"]["flushing_memtables"] == 1
    status = disk_admin(e.files, "heal")
    assert status["failing"] is None and status["failed_calls"] >= 1
    assert e.flush() == ["ks.t"]
    assert e.stats()["ks.t"]["flushing_memtables"] == 0 and e.stats()["ks.t"]["sstable_count"] >= 1
    e.close()
    # What the refused flush held is in the SSTables (and the commit log replays nothing twice).
    e = StorageEngine(tmp_path, StorageConfig(disk_faults=True), ManualClock())
    e.open()
    assert _value(e, b"a") == b"1" and _value(e, b"b") == b"2"
    e.close()


def test_a_refused_flush_is_never_lost_on_a_restart(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    _put(e, b"a", b"1")
    e.sync_commitlog()
    disk_admin(e.files, "fail", "EIO", "data")
    with pytest.raises(StorageFailure):
        e.flush()
    e.close()  # the process ends with the flush never done: the commit log still has the write
    e = StorageEngine(tmp_path, StorageConfig(disk_faults=True), ManualClock())
    e.open()
    assert _value(e, b"a") == b"1"
    e.close()


def test_a_failing_data_disk_refuses_compaction_and_keeps_its_inputs(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    for i in range(4):
        _put(e, b"k%d" % i, b"v%d" % i, ts=i + 1)
        e.flush()
    disk_admin(e.files, "fail", "ENOSPC", "data")
    with pytest.raises(DiskFull, match="compaction failed"):
        e.compact("ks", "t", major=True)
    assert e.stats()["ks.t"]["sstable_count"] == 4
    assert [_value(e, b"k%d" % i) for i in range(4)] == [b"v%d" % i for i in range(4)]
    disk_admin(e.files, "heal")
    assert e.compact("ks", "t", major=True)["inputs"] == [1, 2, 3, 4]
    assert e.stats()["ks.t"]["sstable_count"] == 1
    e.close()


def test_an_eio_data_disk_fails_sstable_reads_by_name_quarantines_nothing_and_heals(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    e = _engine(tmp_path)
    _put(e, b"old", b"1")
    e.flush()
    _put(e, b"new", b"2")  # in the memtable only
    disk_admin(e.files, "fail", "EIO", "data")
    with pytest.raises(StorageFailure, match="Input/output error") as exc:
        _value(e, b"old")
    assert "Data.db" in exc.value.path
    with pytest.raises(StorageFailure):
        list(e.scan("ks", "t"))
    assert _value(e, b"new") == b"2"  # a key no SSTable may hold needs no disk read
    _put(e, b"newer", b"3")  # writes go on: the commit log is on the other disk
    assert sum("SSTable read failed" in r.getMessage() for r in caplog.records) == 1  # once a second, not per read
    assert disk_admin(e.files, "status")["failed_reads"] >= 2
    assert e.quarantined() == [] and e.corrupt_sstables() == [] and e.held_tables() == {}
    disk_admin(e.files, "heal")
    assert _value(e, b"old") == b"1" and len(list(e.scan("ks", "t"))) == 3
    e.close()


def test_a_full_data_disk_still_reads_and_a_failing_commitlog_disk_still_flushes(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    _put(e, b"a", b"1")
    e.flush()
    disk_admin(e.files, "fail", "ENOSPC", "data")
    assert _value(e, b"a") == b"1"  # a full disk refuses writes, not reads
    disk_admin(e.files, "fail", "EIO", "commitlog")
    with pytest.raises(StorageFailure):
        _put(e, b"b", b"2")
    _value(e, b"a")
    assert e.flush() == [] and e.stats()["ks.t"]["sstable_count"] == 1  # SSTables are not on that disk
    with pytest.raises(ValueError, match="disk must be one of commitlog, data"):
        disk_admin(e.files, "fail", "EIO", "tape")
    e.close()


def test_a_data_file_damaged_under_a_running_engine_is_quarantined_on_read_and_reads_are_held(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    for i in range(20):
        _put(e, b"k%02d" % i, b"v" * 100)
    e.flush()
    _put(e, b"k00", b"newer", ts=2)
    e.flush()
    [old, new] = sorted((tmp_path / "data" / "ks").glob("t-*/*-Data.db"))
    with open(old, "r+b") as f:  # in place, as the nemesis does: the engine's mapping sees it
        f.seek(old.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    outcomes = []
    for i in range(20):
        try:
            outcomes.append(_value(e, b"k%02d" % i))
        except CorruptSSTableError:
            outcomes.append("corrupt")
        except AwaitingRepair:
            outcomes.append("held")
    # Every answer before the damaged record is right; it fails once; then the table waits.
    first = outcomes.index("corrupt")
    assert outcomes[:first] == [b"newer", *[b"v" * 100] * (first - 1)][:first]
    assert set(outcomes[first + 1:]) <= {"held"}
    assert e.quarantined() and not old.exists() and new.exists()
    assert "ks.t" in e.held_tables()
    e.release_reads()  # what a scrub does after its repair
    assert _value(e, b"k00") == b"newer"
    e.close()

