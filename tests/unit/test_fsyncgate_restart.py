"""After a failed commit log fsync the node starts again (fsyncgate: the kernel may have dropped
the pages the failed fsync covered, so that part of the segment reads back as garbage while the
records written after it are intact). The log writes a fence record right after the failure; a
restart replays around the damage it explains, saying what it skipped and why, and still refuses
damage no fence explains. No write acknowledged under batch or group sync is lost."""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path

import pytest

from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.errors import CommitLogCorrupt, CommitLogSyncFailed, StorageFailure
from nth_fault import NthFault, injected
from storage_model import ManualClock

sys.path.insert(0, str(Path(__file__).parent))
# The sweep, and its fixture: a directory in memory (these tests fsync a lot, for nothing).
from test_disk_fault_sweep import _sweep, fast_dir  # noqa: E402,F401


def _engine(path: Path, policy: str = "ignore", sync: str = "batch") -> StorageEngine:
    e = StorageEngine(path, StorageConfig(commitlog_sync=sync, commit_failure_policy=policy), ManualClock())
    e.open()
    return e


def _put(e: StorageEngine, key: bytes, value: bytes, ts: int) -> None:
    e.wait_durable(e.apply("ks", "t", Mutation(key, [Cell("c", value, ts)])))


def _value(e: StorageEngine, key: bytes) -> bytes | None:
    p = e.read("ks", "t", key)
    return None if p is None else p.cells["c"].value


def _watched(tmp: Path) -> NthFault:
    """Counts the commit log fsyncs (so a failed one knows what earlier ones made durable)."""
    return NthFault(tmp, None, errno.EIO, fsyncgate=True, only=("fsync", ".log"))


def _fail_next_fsync(fault: NthFault) -> None:
    fault.fail_at = fault.count + 1


@pytest.mark.parametrize("policy", ["ignore", "stop"])
def test_a_restart_after_a_failed_fsync_replays_around_what_it_lost(fast_dir: Path, policy: str,  # noqa: F811
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    fault = _watched(fast_dir)
    with injected(fault):
        e = _engine(fast_dir, policy)
        e.create_table("ks", "t")
        _put(e, b"before", b"a", 1)
        _fail_next_fsync(fault)
        with pytest.raises(CommitLogSyncFailed):
            _put(e, b"refused", b"lost", 2)
        if policy == "ignore":
            _put(e, b"after", b"c", 3)  # acknowledged after the failure: behind the damage
        e.close()
    assert fault.lost
    fault.power_loss()  # the dropped pages read back as zeros
    with caplog.at_level(logging.ERROR, logger="ringlab.storage.commitlog"):
        e = _engine(fast_dir, policy)
    assert _value(e, b"before") == b"a"
    if policy == "ignore":
        assert _value(e, b"after") == b"c"
    lost_path = fault.lost[0][0]
    assert [f for f, *_ in e.replay_report.fenced] == [lost_path]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "an fsync of this segment failed at runtime" in said and "none of the writes in them was acknowledged" in said
    e.create_table("ks", "t")
    _put(e, b"later", b"d", 4)  # the restarted node writes again
    e.close()
    # The fence outlives nothing it explains: a second restart finds the same and starts too.
    e = _engine(fast_dir, policy)
    assert _value(e, b"later") == b"d"
    e.close()


def test_periodic_mode_says_the_skipped_writes_may_have_been_acknowledged(fast_dir: Path,  # noqa: F811
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    fault = _watched(fast_dir)
    with injected(fault):
        e = _engine(fast_dir, sync="periodic")
        e.create_table("ks", "t")
        e.apply("ks", "t", Mutation(b"k", [Cell("c", b"v", 1)]))
        _fail_next_fsync(fault)
        with pytest.raises(CommitLogSyncFailed):
            e.sync_commitlog()
        e.apply("ks", "t", Mutation(b"k2", [Cell("c", b"v2", 2)]))
        e.close()
    fault.power_loss()
    with caplog.at_level(logging.ERROR, logger="ringlab.storage.commitlog"):
        e = _engine(fast_dir, sync="periodic")
    assert _value(e, b"k2") == b"v2"
    assert "may have been acknowledged: commitlog_sync = periodic promises durability only up to the last fsync" \
        in " ".join(r.getMessage() for r in caplog.records)
    e.close()


def test_damage_no_fence_explains_still_refuses_the_start(fast_dir: Path) -> None:  # noqa: F811
    e = _engine(fast_dir)
    e.create_table("ks", "t")
    for i in range(3):
        _put(e, b"k%d" % i, b"v", i + 1)
    e.close()
    seg = sorted((fast_dir / "commitlog").glob("*.log"))[-1]
    data = bytearray(seg.read_bytes())
    data[30] ^= 0xFF  # inside the first record: valid records follow, and no fsync failed
    seg.write_bytes(bytes(data))
    with pytest.raises(CommitLogCorrupt):
        _engine(fast_dir)


def test_a_write_a_failed_fsync_covered_is_never_acknowledged_by_a_later_one(fast_dir: Path) -> None:  # noqa: F811
    e = _engine(fast_dir)
    e.create_table("ks", "t")
    pos = e.apply("ks", "t", Mutation(b"k", [Cell("c", b"v", 1)]))
    with injected(NthFault(fast_dir, 1, errno.EIO, only=("fsync", ".log"))):
        with pytest.raises(CommitLogSyncFailed):
            e.sync_commitlog()
    _put(e, b"k2", b"v2", 2)  # a later fsync succeeds and covers a higher position
    with pytest.raises(CommitLogSyncFailed):
        e.wait_durable(pos)  # used to return: the synced position had passed it
    e.close()


class _Failing(NthFault):
    """Every call of the kinds in ``failing`` on a commit log segment fails until healed."""

    failing: set[str] = set()

    def check(self, kind: str, path: object) -> bool:
        return self.active and self._mine(path) and kind in self.failing and str(path).endswith(".log")


def test_until_the_fence_is_written_no_write_is_taken_under_ignore(fast_dir: Path) -> None:  # noqa: F811
    e = _engine(fast_dir)
    e.create_table("ks", "t")
    fault = _Failing(fast_dir, code=errno.EIO, fsyncgate=True)
    with injected(fault):
        # The fsync fails, and so does the fence's new segment, and the next append's try.
        fault.failing = {"fsync", "open"}
        with pytest.raises(CommitLogSyncFailed):
            _put(e, b"k", b"v", 1)
        fault.failing = {"open"}
        with pytest.raises(StorageFailure, match="commit log segment creation"):
            _put(e, b"k2", b"v2", 2)
        fault.failing = set()  # the disk is back: the fence goes first, then the write
        _put(e, b"k3", b"v3", 3)
    e.close()
    fault.power_loss()
    e = _engine(fast_dir)
    assert _value(e, b"k3") == b"v3" and _value(e, b"k2") is None and e.replay_report.fenced
    e.close()


def test_every_fsync_may_fail_and_lose_what_it_covered_under_ignore(fast_dir: Path) -> None:  # noqa: F811
    # The sweep's workload, the commit log fsyncs and every other fsync failing in turn with
    # fsyncgate under commit_failure_policy = ignore: each restart starts, every acknowledged
    # write reads back, later writes were taken (the case the sweep left out: the next start
    # refused the log as corrupt).
    assert _sweep(fast_dir, errno.EIO, "ignore", True, lambda kind, path: kind == "fsync") > 40
