"""Durability under a failing disk: a failed fsync never acknowledges, damaged commit logs are
never silently cut short, a full disk is a named error (fault injection by monkeypatching os)."""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

import pytest

from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.commitlog import position_segment
from node.storage.errors import (
    CommitLogCorrupt,
    CommitLogSyncFailed,
    DiskFull,
    InvalidMutation,
    StorageFailure,
    WritesStopped,
)
from storage_model import ManualClock

WRITERS = 16


def _engine(path: Path, **cfg) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(**cfg), ManualClock())
    e.open()
    e.create_table("ks", "t")
    return e


def _m(i: int) -> Mutation:
    return Mutation(b"k%d" % i, [Cell("c", b"v%d" % i, i + 1)])


def _eio(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def _concurrent_writes(e: StorageEngine, base: int) -> tuple[int, list[BaseException]]:
    """WRITERS threads each apply and wait for durability; returns (acknowledged, errors)."""
    acked = []
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def one(i: int) -> None:
        start.wait()
        try:
            e.wait_durable(e.apply("ks", "t", _m(base + i)))
            acked.append(i)
        except StorageFailure as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return len(acked), errors


@pytest.mark.parametrize("mode", ["batch", "group"])
def test_failed_fsync_acknowledges_no_write_and_stops_writes(tmp_path: Path, mode: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    e = _engine(tmp_path, commitlog_sync=mode, commitlog_group_window_ms=2)
    synced_before = e.stats()["_commitlog"]["synced_position"]
    monkeypatch.setattr(os, "fdatasync", _eio)
    acked, errors = _concurrent_writes(e, 0)
    print(f"{mode}: writes acknowledged after a failed fsync: {acked} of {WRITERS}")
    assert acked == 0
    assert len(errors) == WRITERS
    assert any(isinstance(x, CommitLogSyncFailed) and "fsync failed" in str(x) for x in errors)
    assert e.stats()["_commitlog"]["synced_position"] == synced_before  # never advanced
    monkeypatch.undo()
    # commit_failure_policy = stop: no more writes (even once fsync works again), reads served.
    with pytest.raises(WritesStopped, match="commit_failure_policy = stop"):
        e.apply("ks", "t", _m(100))
    assert e.write_failure() is not None
    served = sum(e.read("ks", "t", b"k%d" % i) is not None for i in range(WRITERS))  # reads never raise
    assert served >= 1  # the first write reached the memtable before its fsync failed
    e.close()


def test_failed_fsync_under_ignore_fails_only_the_writes_it_covered(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    e = _engine(tmp_path, commitlog_sync="batch", commit_failure_policy="ignore")
    monkeypatch.setattr(os, "fdatasync", _eio)
    acked, _ = _concurrent_writes(e, 0)
    assert acked == 0
    monkeypatch.undo()
    acked, errors = _concurrent_writes(e, 100)
    assert (acked, errors) == (WRITERS, [])
    e.close()


def test_failed_fsync_under_die_calls_the_fatal_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    died: list[BaseException] = []
    e = StorageEngine(tmp_path, StorageConfig(commitlog_sync="batch", commit_failure_policy="die"), ManualClock(),
                      on_fatal=died.append)
    e.open()
    e.create_table("ks", "t")
    monkeypatch.setattr(os, "fdatasync", _eio)
    with pytest.raises(CommitLogSyncFailed):
        e.wait_durable(e.apply("ks", "t", _m(1)))
    assert len(died) == 1 and isinstance(died[0], CommitLogSyncFailed)
    monkeypatch.undo()
    e.close()


def test_failed_periodic_sync_stops_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = _engine(tmp_path)
    e.apply("ks", "t", _m(1))
    monkeypatch.setattr(os, "fdatasync", _eio)
    with pytest.raises(CommitLogSyncFailed):
        e.sync_commitlog()
    monkeypatch.undo()
    with pytest.raises(WritesStopped):
        e.apply("ks", "t", _m(2))
    assert e.read("ks", "t", b"k1") is not None
    e.close()


# -- commit log replay --------------------------------------------------------------------------

def _logged(path: Path, n: int = 60, **cfg) -> tuple[Path, list[int]]:
    e = _engine(path, **cfg)
    positions = [e.apply("ks", "t", _m(i)) for i in range(n)]
    e.close()
    seg = path / "commitlog" / f"CommitLog-{position_segment(positions[-1]):016d}.log"
    return seg, [p & 0xFFFFFFFF for p in positions]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["payload", "length"])
def test_mid_log_damage_stops_the_node_with_file_and_offset(tmp_path: Path, where: str) -> None:
    seg, ends = _logged(tmp_path)
    start = ends[19]  # record 20 starts where record 19 ends
    _flip(seg, ends[20] - 2 if where == "payload" else start + 1)
    size = seg.stat().st_size
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock())
    with pytest.raises(CommitLogCorrupt) as info:
        e.open()
    assert info.value.path == str(seg) and info.value.offset == start
    assert str(seg) in str(info.value) and f"byte offset {start}" in str(info.value)
    assert seg.stat().st_size == size  # nothing truncated: the records after it are still there


def test_skip_corrupt_replays_around_damage_and_logs_what_was_lost(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    seg, ends = _logged(tmp_path)
    _flip(seg, ends[20] - 2)  # record 20's payload
    caplog.set_level(logging.ERROR)
    e = StorageEngine(tmp_path, StorageConfig(commitlog_replay="skip_corrupt"), ManualClock())
    e.open()
    served = [i for i in range(60) if e.read("ks", "t", b"k%d" % i) is not None]
    print(f"skip_corrupt: {len(served)} of 60 records replayed, lost {sorted(set(range(60)) - set(served))}")
    assert served == [i for i in range(60) if i != 20]
    assert [(p, off) for p, off, _, _ in e.replay_report.skipped] == [(str(seg), ends[19])]
    assert any(str(seg) in r.getMessage() and f"byte offset {ends[19]}" in r.getMessage() and "lost" in r.getMessage()
               for r in caplog.records)
    e.close()


def test_damage_in_an_older_segment_is_not_a_torn_tail(tmp_path: Path) -> None:
    e = _engine(tmp_path, commitlog_segment_size_mb=1)
    big = b"x" * 200_000
    for i in range(12):  # about 2.4 MB: three segments
        e.apply("ks", "t", Mutation(b"k%d" % i, [Cell("c", big, 1)]))
    e.close()
    segs = sorted((tmp_path / "commitlog").iterdir())
    assert len(segs) >= 2
    first = segs[0]
    _flip(first, first.stat().st_size - 10)  # the last record of a segment that is not the newest
    with pytest.raises(CommitLogCorrupt) as info:
        StorageEngine(tmp_path, StorageConfig(commitlog_segment_size_mb=1), ManualClock()).open()
    assert info.value.path == str(first)


def test_torn_tail_is_still_truncated(tmp_path: Path) -> None:
    seg, ends = _logged(tmp_path)
    seg.write_bytes(seg.read_bytes()[: ends[-1] - 3])
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock())
    e.open()
    assert e.read("ks", "t", b"k59") is None and e.read("ks", "t", b"k58") is not None
    assert [off for _, off, _ in e.replay_report.truncations] == [ends[-2]]
    e.close()


# -- disk full ------------------------------------------------------------------------------------

def test_full_disk_on_append_is_disk_full_with_the_path_and_nothing_kept(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    e = _engine(tmp_path)
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DiskFull) as info:
        e.apply("ks", "t", _m(1))
    assert "CommitLog-" in info.value.path and "No space left" in str(info.value)
    assert e.read("ks", "t", b"k1") is None  # refused, not half-applied
    monkeypatch.setattr(os, "write", real_write)
    e.apply("ks", "t", _m(2))  # space is back: writes work (a full disk does not stop the node)
    assert e.read("ks", "t", b"k2") is not None
    e.close()


def test_full_disk_during_flush_is_disk_full_and_the_memtable_is_kept(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import node.storage.sstable as sstable

    e = _engine(tmp_path)
    e.apply("ks", "t", _m(1))

    class Full(sstable.SSTableWriter):
        def add(self, p):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "No space left on device", str(self.directory / "x-Data.db"))

    monkeypatch.setattr("node.storage.engine.SSTableWriter", Full)
    with pytest.raises(DiskFull, match="flush failed"):
        e.flush()
    monkeypatch.undo()
    assert e.read("ks", "t", b"k1") is not None
    assert e.flush() == ["ks.t"]  # retried once space is back
    assert e.read("ks", "t", b"k1") is not None
    e.close()


def test_open_on_a_full_disk_raises_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _engine(tmp_path).close()

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DiskFull, match="cannot open storage"):
        StorageEngine(tmp_path, StorageConfig(), ManualClock()).open()


def test_check_mutation_refuses_what_apply_would_refuse(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    with pytest.raises(InvalidMutation, match="NUL"):
        e.check_mutation("ks", "t", Mutation(b"k", [Cell("a\x00b", b"v", 1)]))
    e.check_mutation("ks", "t", _m(1))
    e.close()


def test_corruption_found_by_a_scan_quarantines_the_file_too(tmp_path: Path) -> None:
    from node.storage.errors import CorruptSSTableError

    e = _engine(tmp_path)
    for i in range(50):
        e.apply("ks", "t", Mutation(b"k%02d" % i, [Cell("c", b"v" * 200, 1)]))
    e.flush()
    [data] = (tmp_path / "data" / "ks").glob("t-*/*-Data.db")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    with open(data, "r+b") as f:
        f.write(raw)
    with pytest.raises(CorruptSSTableError):
        list(e.scan("ks", "t"))
    assert e.quarantined() and not data.exists()
    assert "ks.t" in e.held_tables()  # point reads wait for a repair; scans (the repair's) go on
    e.apply("ks", "t", _m(1))
    assert [p.key for p in e.scan("ks", "t")] == [b"k1"]
    e.close()
