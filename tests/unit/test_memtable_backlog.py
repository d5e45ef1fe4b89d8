"""While the data disk refuses flushes, the memtables that could not be written stay in memory;
past the backlog limit the table refuses writes with a named DiskFull (as Cassandra blocks writes
when memtable space runs out) instead of growing until the process dies, keeps serving reads, and
takes writes again once a flush succeeds. Nothing acknowledged is lost."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import node.storage.sstable as sstable
from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.errors import DiskFull
from storage_model import ManualClock


class _Refused(sstable.SSTableWriter):
    def add(self, p):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error", str(self.directory / "x-Data.db"))


def _m(i: int) -> Mutation:
    return Mutation(b"k%d" % i, [Cell("c", b"v" * 200, i + 1)])


def test_a_failing_data_disk_makes_writes_refused_past_the_backlog_then_they_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = StorageConfig(memtable_flush_threshold_kb=1, memtable_backlog_kb=8)
    e = StorageEngine(tmp_path, cfg, ManualClock())
    e.open()
    e.create_table("ks", "t")
    monkeypatch.setattr("node.storage.engine.SSTableWriter", _Refused)
    acked: list[int] = []
    refused = None
    for i in range(200):
        try:
            e.apply("ks", "t", _m(i))
        except DiskFull as exc:
            refused = exc
            break
        acked.append(i)
        try:
            e.maybe_flush()  # what the node's flush task does after writes
        except Exception:
            pass  # the flush the failing disk refused: its memtable is kept
    assert refused is not None, "writes were never refused while every flush failed"
    assert "wait for a flush" in str(refused) and "ks.t" in str(refused)
    # Bounded by the limit, not by the loop.
    assert 8 <= len(acked) <= 41  # 8 KB of memtable bytes: at most 41 writes of 200 bytes
    assert all(e.read("ks", "t", b"k%d" % i) is not None for i in acked)  # reads keep being served
    monkeypatch.undo()
    assert e.flush() == ["ks.t"]
    e.apply("ks", "t", _m(1000))  # a flush went through: writes resume
    e.close()
    again = StorageEngine(tmp_path, cfg, ManualClock())
    again.open()
    assert all(again.read("ks", "t", b"k%d" % i) is not None for i in [*acked, 1000])
    again.close()


def test_the_default_backlog_is_four_flush_thresholds_but_at_least_32_mb() -> None:
    assert StorageConfig().memtable_backlog_bytes == 4 * 64 * 1024 * 1024
    assert StorageConfig(memtable_flush_threshold_kb=64).memtable_backlog_bytes == 32 * 1024 * 1024
    with pytest.raises(ValueError, match="memtable_backlog_kb"):
        StorageConfig(memtable_backlog_kb=-1).validate()
