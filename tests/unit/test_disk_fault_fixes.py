"""What the failing-disk sweep (test_disk_fault_sweep.py) found, one test each: a disk refusing a
schema write, a snapshot, a compaction's clean-up or a commit log segment's deletion is a named
StorageFailure with nothing half-done kept in memory, a failed commit log fsync stays failed, and a
hint the disk tore or a delivery it broke loses no hint."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import trio

from node.hints import HintStore
from node.runtime import Clock, Runtime
from node.storage import Cell, Mutation, StorageConfig, StorageEngine, TableOptions
from node.storage.commitlog import CommitLog
from node.storage.errors import (AwaitingRepair, CommitLogSyncFailed, CorruptSSTableError, DiskFull, StorageFailure,
                                 UnknownTable)
from node.storage.files import AppendFile, FaultyFiles, OSFiles
from nth_fault import NthFault, injected
from storage_model import ManualClock


def _engine(path: Path, **kw: object) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(**kw), ManualClock())  # type: ignore[arg-type]
    e.open()
    return e


def _put(e: StorageEngine, table: str, key: bytes, value: bytes, ts: int = 1) -> None:
    e.wait_durable(e.apply("ks", table, Mutation(key, [Cell("c", value, ts)])))


@pytest.mark.parametrize("call", [("write", "schema.json.tmp"), ("fsync", "schema.json.tmp"),
                                  ("replace", "schema.json")])
def test_a_table_the_disk_would_not_record_is_not_created(tmp_path: Path, call: tuple[str, str]) -> None:
    e = _engine(tmp_path)
    with injected(NthFault(tmp_path, 1, errno.ENOSPC, only=call)):
        with pytest.raises(DiskFull, match="schema write"):
            e.create_table("ks", "t")
    # It used to stay in memory: writes to it were acknowledged, and a restart, which reads the
    # tables from schema.json, skipped their commit log records.
    with pytest.raises(UnknownTable):
        _put(e, "t", b"k", b"v")
    e.create_table("ks", "t")  # the disk is back
    _put(e, "t", b"k", b"v")
    e.close()
    e = _engine(tmp_path)
    assert e.read("ks", "t", b"k").cells["c"].value == b"v"  # type: ignore[union-attr]
    e.close()


def test_a_table_drop_the_disk_refused_leaves_the_table_serving(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    _put(e, "t", b"k", b"v")
    with injected(NthFault(tmp_path, 1, errno.EIO, only=("replace", "schema.json"))):
        with pytest.raises(StorageFailure, match="schema write"):
            e.drop_table("ks", "t")
    _put(e, "t", b"k2", b"v2")
    e.close()
    e = _engine(tmp_path)
    assert e.read("ks", "t", b"k2").cells["c"].value == b"v2"  # type: ignore[union-attr]
    e.close()


@pytest.mark.parametrize("call", [("link", "Data.db"), ("mkdir", "s1.partial"), ("rename", "s1")])
def test_a_snapshot_the_disk_refused_is_a_named_error_and_leaves_no_snapshot(tmp_path: Path, call: tuple[str, str]) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    _put(e, "t", b"k", b"v")
    with injected(NthFault(tmp_path, 1, errno.EIO, only=call)):
        with pytest.raises(StorageFailure, match="snapshot 's1'"):
            e.snapshot("s1")
    assert e.list_snapshots() == [] and not (tmp_path / "snapshots" / "s1.partial").exists()
    assert e.snapshot("s1").is_dir()  # the same tag works once the disk does
    e.close()


def test_a_snapshot_of_an_engine_without_tables_is_empty_not_an_oserror(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    assert e.snapshot("empty").is_dir() and e.list_snapshots() == ["empty"]
    e.close()


def test_a_compaction_whose_inputs_cannot_be_deleted_is_still_done(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    for i in range(3):
        _put(e, "t", b"k%d" % i, b"v%d" % i, ts=i + 1)
        e.flush()
    with injected(NthFault(tmp_path, 1, errno.EIO, only=("unlink", "2-Data.db"))):
        result = e.compact("ks", "t", major=True)  # it raised a bare OSError after the swap
    assert result is not None and result["inputs"] == [1, 2, 3]
    assert e.stats()["ks.t"]["sstable_count"] == 1
    e.close()
    e = _engine(tmp_path)  # the input left behind holds nothing the output lacks
    assert [e.read("ks", "t", b"k%d" % i).cells["c"].value for i in range(3)] == [b"v0", b"v1", b"v2"]  # type: ignore[union-attr]
    e.close()


def test_a_clean_commit_log_segment_that_cannot_be_deleted_is_kept_and_the_flush_succeeds(tmp_path: Path) -> None:
    e = _engine(tmp_path, commitlog_sync="batch", commitlog_segment_size_kb=1)
    e.create_table("ks", "t")
    for i in range(10):
        _put(e, "t", b"k%d" % i, b"x" * 300)
    with injected(NthFault(tmp_path, 1, errno.EIO, only=("unlink", ".log"))):
        assert e.flush() == ["ks.t"]
    assert e.stats()["_commitlog"]["segments"] > 1
    e.flush()  # the disk is back: the next flush deletes it
    assert e.stats()["_commitlog"]["segments"] == 1
    e.close()


def _log(tmp_path: Path, files: object) -> CommitLog:
    cl = CommitLog(tmp_path, sync_mode="batch", segment_bytes=1024, group_window_s=0.0, clock=Clock(),
                   files=files)  # type: ignore[arg-type]
    list(cl.replay())
    cl.start()
    return cl


def test_a_commit_log_fsync_that_failed_stays_failed_when_later_fsyncs_succeed(tmp_path: Path) -> None:
    door = FaultyFiles(OSFiles())
    cl = _log(tmp_path, door)
    pos = cl.append(1, ["m"])
    door.fault.errno = errno.EIO
    with pytest.raises(CommitLogSyncFailed):
        cl.wait_durable(pos)
    door.fault.errno = None
    # fsyncgate: the fsyncs that succeed now prove nothing about the pages the failed one dropped.
    # The first one used to clear the sticky failure, and the second then acknowledged pos.
    cl.sync()
    cl.sync()
    assert cl.synced_position() < pos and cl.failure() is not None
    with pytest.raises(CommitLogSyncFailed):
        cl.wait_durable(pos)
    cl.close()


class _CloseFails:
    """A door whose files refuse to close (a rolled segment's last close meets a failing disk)."""

    name = "os"

    def __init__(self) -> None:
        self.inner = OSFiles()
        self.fail = False

    def create(self, path: Path) -> AppendFile:
        f = self.inner.create(path)
        door = self

        class _F:
            write, fsync, truncate, unsynced_bytes = f.write, f.fsync, f.truncate, f.unsynced_bytes

            def close(self) -> None:
                f.close()
                if door.fail:
                    raise OSError(errno.EIO, "Input/output error", str(path))

        return _F()  # type: ignore[return-value]

    def read(self, path: Path) -> bytes:
        return self.inner.read(path)


def test_closing_a_rolled_segment_on_a_failing_disk_is_a_named_sync_failure(tmp_path: Path) -> None:
    door = _CloseFails()
    cl = _log(tmp_path, door)
    for _ in range(5):  # 300-byte records: the 1 KB segment rolls
        cl.append(1, ["x" * 300])
    assert cl.segment_count() > 1
    door.fail = True
    with pytest.raises(CommitLogSyncFailed):  # it was the bare OSError
        cl.sync()
    door.fail = False
    cl.close()


def _hint(hs: HintStore, i: int) -> None:
    hs.store("n2", "ks", "t", Mutation(b"h%d" % i, [Cell("c", b"v%d" % i, i + 1)]).to_obj(), i)


def test_a_hint_the_disk_tore_is_cut_off_so_the_hints_after_it_are_delivered(tmp_path: Path) -> None:
    hs = HintStore(tmp_path / "hints", Runtime.real(1), 3600.0, throttle_kb_per_s=1 << 20)
    with injected(NthFault(tmp_path, 2, errno.ENOSPC, only=("write", "n2.hints"))):  # half of it written
        _hint(hs, 0)
        with pytest.raises(OSError):
            _hint(hs, 1)
    _hint(hs, 2)
    got: list[bytes] = []

    async def send(target: str, hint: dict) -> None:  # type: ignore[type-arg]
        got.append(Mutation.from_obj(hint["m"]).key)

    assert trio.run(hs.deliver, "n2", send) is True
    assert got == [b"h0", b"h2"]  # the torn h1 used to make delivery drop h2 as "corrupt"


def test_a_disk_error_during_hint_delivery_keeps_the_hints_and_does_not_raise(tmp_path: Path) -> None:
    hs = HintStore(tmp_path / "hints", Runtime.real(1), 3600.0, throttle_kb_per_s=1 << 20)
    _hint(hs, 0)

    async def send(target: str, hint: dict) -> None:  # type: ignore[type-arg]
        pass

    with injected(NthFault(tmp_path, 1, errno.EIO, only=("replace", "n2.hints.delivering"))):
        # The OSError used to escape HintStore.run and end the node's task group.
        assert trio.run(hs.deliver, "n2", send) is False
    assert hs.pending() and trio.run(hs.deliver, "n2", send) is True


_SMALL_SEGMENTS = StorageConfig(commitlog_segment_size_kb=1)


def _deleted_after_grace(tmp_path: Path, clock: ManualClock) -> StorageEngine:
    """Generation 1 holds k's value, generation 2 its deletion, past its grace period, and the
    commit log holds neither any more (its segments were flushed and recycled)."""
    e = StorageEngine(tmp_path, _SMALL_SEGMENTS, clock)
    e.open()
    e.create_table("ks", "t", TableOptions(gc_grace_seconds=0))
    e.create_table("ks", "other")
    e.apply("ks", "t", Mutation(b"k", [Cell("c", b"old", 1)]))
    e.flush()
    e.apply("ks", "t", Mutation(b"k", [Cell("c", None, 2)]))
    e.flush()
    for i in range(8):  # rolls the segment holding both records; the flush then deletes it
        e.apply("ks", "other", Mutation(b"f%d" % i, [Cell("c", b"x" * 300, 1)]))
    e.flush()
    clock.advance(10)
    return e


def _value(e: StorageEngine) -> bytes | None:
    p = e.read("ks", "t", b"k")
    return None if p is None else p.cells["c"].value


def test_a_compaction_that_purged_a_deletion_never_brings_the_deleted_data_back(tmp_path: Path) -> None:
    clock = ManualClock()
    e = _deleted_after_grace(tmp_path, clock)
    # The deletion is past its grace period: the compaction drops both. Deleting the tombstone's
    # file works, deleting the data's file fails: that file came back at the next start, and the
    # deleted value with it.
    with injected(NthFault(tmp_path, 1, errno.EIO, only=("unlink", "1-TOC.txt"))):
        assert e.compact("ks", "t", major=True) is not None
    assert _value(e) is None
    e.close()
    for _ in range(2):  # the restart removes what the compaction could not, and stays so
        e = StorageEngine(tmp_path, _SMALL_SEGMENTS, clock)
        e.open()
        assert _value(e) is None
        e.close()
    assert not list(tmp_path.glob("data/ks/t-*/obsolete-*"))


def test_a_compaction_that_cannot_record_its_inputs_as_obsolete_leaves_them_all(tmp_path: Path) -> None:
    clock = ManualClock()
    e = _deleted_after_grace(tmp_path, clock)
    with injected(NthFault(tmp_path, 1, errno.ENOSPC, only=("write", ".tmp"))):
        assert e.compact("ks", "t", major=True) is not None
    assert sorted(p.name for p in tmp_path.glob("data/ks/t-*/*-TOC.txt")) == ["1-TOC.txt", "2-TOC.txt"]
    e.close()
    e = StorageEngine(tmp_path, _SMALL_SEGMENTS, clock)
    e.open()
    assert _value(e) is None  # both inputs back together: the deletion still wins
    e.close()


@pytest.mark.parametrize("moving", ["discard", "quarantine"])
def test_a_corrupt_sstable_moved_aside_part_way_never_stops_the_next_start(tmp_path: Path, moving: str) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    _put(e, "t", b"k", b"v")
    e.flush()
    data = next(tmp_path.glob("data/ks/t-*/1-Data.db"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    if moving == "discard":
        assert e.verify() == [str(data)]  # a scrub finds it; a read finds it and quarantines it
    # The disk refuses the second move: the files were moved Data first, so a TOC stayed behind
    # naming a Data file that was gone, and the next start failed on it.
    # (A quarantine first records its hold in held.json, one replace more before the moves.)
    with injected(NthFault(tmp_path, 2 if moving == "discard" else 3, errno.EIO, only=("replace", ""))):
        if moving == "discard":
            with pytest.raises(StorageFailure, match="discard"):
                e.discard_corrupt("ks", "t")
        else:
            with pytest.raises(Exception):
                e.read("ks", "t", b"k")  # quarantines it (and the table's reads are held)
    e.close()
    e = _engine(tmp_path)  # starts: an SSTable without its TOC is an unfinished one, removed
    assert e.corrupt_sstables() == []
    if moving == "quarantine":  # the quarantine's hold outlives the restart (held.json) until a repair
        with pytest.raises(AwaitingRepair):
            e.read("ks", "t", b"k")
        assert e.release_reads() == ["ks.t"]
    assert e.read("ks", "t", b"k").cells["c"].value == b"v"  # type: ignore[union-attr]
    e.close()


def test_an_sstable_missing_a_component_its_toc_lists_is_corrupt_and_the_node_starts(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    _put(e, "t", b"k", b"v")
    e.flush()
    e.close()
    next(tmp_path.glob("data/ks/t-*/1-Index.db")).unlink()
    e = _engine(tmp_path)  # it raised "cannot open storage: No such file or directory"
    assert [Path(n).name for n in e.corrupt_sstables()] == ["1-Index.db"]
    with pytest.raises(CorruptSSTableError, match="component missing"):
        e.read("ks", "t", b"k")
    assert e.discard_corrupt("ks", "t")
    e.close()


def test_clearing_a_snapshot_the_disk_refuses_is_a_named_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    _put(e, "t", b"k", b"v")
    e.snapshot("s1")

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error", str(path))

    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", refuse)
        with pytest.raises(StorageFailure, match="clearing snapshot 's1'"):  # a bare OSError: a ServerError
            e.clear_snapshot("s1")
    e.clear_snapshot("s1")
    assert e.list_snapshots() == []
    e.close()
