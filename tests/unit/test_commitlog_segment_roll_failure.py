"""A commit log segment the disk refuses to create is a commit log failure like a refused append:
under ``commit_failure_policy = stop`` the node stops taking writes (it used to raise a bare
OSError on every write, each one retrying the roll, and never stopped), a full disk refuses the
write only, and no headerless segment is left for the next start to stumble on."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.errors import DiskFull, StorageFailure, WritesStopped
from node.storage.files import disk_fault
from storage_model import ManualClock


def _engine(path: Path, policy: str = "stop") -> StorageEngine:
    # Segments of 1 KB: a few writes of 300 bytes fill one, so the next write rolls.
    e = StorageEngine(path, StorageConfig(commitlog_sync="batch", commitlog_segment_size_kb=1, disk_faults=True,
                                          commit_failure_policy=policy), ManualClock())
    e.open()
    e.create_table("ks", "t")
    return e


def _m(i: int) -> Mutation:
    return Mutation(b"k%d" % i, [Cell("c", b"x" * 300, i + 1)])


def _fill_segment(e: StorageEngine) -> int:
    """Write a few segments' worth; returns the writes made."""
    for i in range(10):
        e.wait_durable(e.apply("ks", "t", _m(i)))
    return 10


def _fail_creates_only(e: StorageEngine, code: int) -> None:
    """The disk refuses new files while appends to open ones still work: the failure meets a
    segment roll first (on a real disk, the moment a disk fills or breaks can be any call)."""
    fault = disk_fault(e.files)
    assert fault is not None
    check = fault.check

    def creates_only(what: str, path: Path) -> None:
        if what == "create":
            fault.errno = code
            try:
                check(what, path)
            finally:
                fault.errno = None

    fault.check = creates_only  # type: ignore[method-assign]


def _heal(e: StorageEngine) -> None:
    del disk_fault(e.files).check  # type: ignore[union-attr]


def _segments(e: StorageEngine) -> list[Path]:
    return sorted(e.data_dir.rglob("CommitLog-*.log"))


def test_a_refused_segment_creation_stops_writes_under_stop(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    written = _fill_segment(e)
    before = _segments(e)
    _fail_creates_only(e, errno.EIO)
    refused = 0
    for i in range(written, written + 20):  # one of these needs a new segment
        try:
            e.wait_durable(e.apply("ks", "t", _m(i)))
        except StorageFailure:
            refused += 1
            break
    assert refused == 1, "no write met the failing disk"
    assert isinstance(e.write_failure(), StorageFailure)
    assert "segment creation failed" in str(e.write_failure())
    # Writes to the open segment would work; the policy still refuses every write until a restart.
    with pytest.raises(WritesStopped):
        e.apply("ks", "t", _m(999))
    assert _segments(e) == before  # nothing half-made was left
    e.close()
    # A restart replays every acknowledged write and takes writes again.
    again = StorageEngine(tmp_path, StorageConfig(commitlog_sync="batch", commitlog_segment_size_kb=1), ManualClock())
    again.open()
    again.create_table("ks", "t")
    assert again.read("ks", "t", b"k0") is not None
    again.wait_durable(again.apply("ks", "t", _m(1000)))
    again.close()


@pytest.mark.parametrize(("policy", "code", "error"), [
    ("stop", errno.ENOSPC, DiskFull),  # a full disk refuses the write only: space may come back
    ("ignore", errno.EIO, StorageFailure),  # ignore fails the writes it covered and carries on
])
def test_a_refused_segment_refuses_the_write_and_does_not_stop_when_the_policy_carries_on(
        tmp_path: Path, policy: str, code: int, error: type[Exception]) -> None:
    e = _engine(tmp_path, policy=policy)
    written = _fill_segment(e)
    _fail_creates_only(e, code)
    with pytest.raises(error):
        for i in range(written, written + 20):
            e.wait_durable(e.apply("ks", "t", _m(i)))
    assert e.write_failure() is None
    _heal(e)
    e.wait_durable(e.apply("ks", "t", _m(2000)))  # the disk answers again: writes go on
    e.close()
