"""The disk nemesis's switch on the engine's file door (node/storage/files.py): while it is on,
commit log writes and fsyncs fail with the chosen errno and the commit log acknowledges nothing."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from node.storage import files
from node.storage.commitlog import CommitLog
from node.storage.errors import StorageError


def test_the_switch_fails_writes_and_fsyncs_with_the_chosen_error_and_heals(tmp_path: Path) -> None:
    door = files.file_ops(False, disk_faults=True)
    f = door.create(tmp_path / "a")
    f.write(b"x")
    assert files.disk_admin(door, "fail", "ENOSPC") == {"failing": "ENOSPC", "disk": "commitlog", "failed_calls": 0,
                                                      "failed_reads": 0}
    with pytest.raises(OSError) as exc:
        f.write(b"y")
    assert exc.value.errno == errno.ENOSPC and "disk nemesis" in str(exc.value)
    files.disk_admin(door, "fail", "EIO")
    with pytest.raises(OSError) as exc:
        f.fsync()
    assert exc.value.errno == errno.EIO
    assert door.read(tmp_path / "a") == b"x"  # reads keep working
    assert files.disk_admin(door, "heal") == {"failing": None, "disk": "commitlog", "failed_calls": 2, "failed_reads": 0}
    f.write(b"z")
    f.fsync()
    assert door.read(tmp_path / "a") == b"xz"


def test_the_admin_op_names_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="disk_faults = false"):
        files.disk_admin(files.OSFiles(), "fail", "EIO")
    door = files.file_ops(True, disk_faults=True)
    assert isinstance(door, files.FaultyFiles) and door.name == "volatile"
    with pytest.raises(ValueError, match="ENOSPC"):
        files.disk_admin(door, "fail", "EPERM")
    with pytest.raises(ValueError, match="fail, heal or status"):
        files.disk_admin(door, "break")


def test_a_commit_log_on_a_failing_disk_acknowledges_nothing_it_could_not_fsync(tmp_path: Path) -> None:
    from node.runtime import Clock

    door = files.FaultyFiles(files.OSFiles())
    log = CommitLog(tmp_path, sync_mode="batch", segment_bytes=1 << 16, group_window_s=0.0, clock=Clock(), files=door)
    list(log.replay())
    log.start()
    first = log.append_payload(1, b"before")
    assert log.sync() >= first
    door.fault.errno = errno.ENOSPC
    with pytest.raises(StorageError):
        log.append_payload(1, b"refused")  # a refused append is never acknowledged
    door.fault.errno = None
    pending = log.append_payload(1, b"written, not yet synced")
    door.fault.errno = errno.EIO
    with pytest.raises(StorageError):
        log.sync()
    door.fault.errno = None
    # The failed fsync covered ``pending``: it is never reported durable (fsyncgate), and under
    # commit_failure_policy stop nothing more is acknowledged until a restart.
    assert log.failure() is not None
    with pytest.raises(StorageError):
        log.append_payload(1, b"after")
    assert pending > first


def test_the_convergence_checker_excuses_a_write_a_failing_disk_refused() -> None:
    from checkers import convergence
    from harness.history import Op

    def history(disk_window: bool) -> list[Op]:
        ops = [Op(0, 10, 0, "invoke", "write", 1, 5, node="n2"), Op(1, 20, 0, "ok", "write", 1, 5, node="n2", timestamp=100)]
        if disk_window:
            ops[:0] = [Op(0, 1, "nemesis", "info", "start-disk", None, {"node": "n3", "disk_error": "EIO"})]
            ops.append(Op(3, 30, "nemesis", "info", "stop-disk", None, {"nodes": ["n3"]}))
        return [Op(i, o.time, o.process, o.type, o.f, o.key, o.value, node=o.node, timestamp=o.timestamp)
                for i, o in enumerate(ops)]

    recs = [{"type": "pass", "pass": "before", "read_repair": "BLOCKING", "hints_held": {"targets": []},
             "workload": {"model": "register", "column": "v"}},
            *({"type": "replica", "pass": "before", "key": 1, "node": n, "replicas": ["n1", "n2", "n3"], "range": [],
               "cells": [] if n == "n3" else [["v", 5, 100, False, None]], "partition_tombstone": None}
              for n in ("n1", "n2", "n3"))]
    params = {"model": "register", "replica_snapshots": recs}
    assert [a.kind for a in convergence.check(history(False), params).anomalies] == ["replica-lost-write"]
    assert not convergence.check(history(True), params).anomalies


def test_the_disk_nemesis_restart_counts_as_a_crash_when_the_files_are_volatile() -> None:
    from checkers import durability
    from harness.history import Op

    heal = Op(0, 5, "nemesis", "info", "stop-disk", None, {"nodes": ["n3"], "disk_errors": {"n3": "EIO"}})
    assert durability.crashes([heal]) == []
    assert [c["nodes"] for c in durability.crashes([heal], kills_lose=True)] == [["n3"]]
