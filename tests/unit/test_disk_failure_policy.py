"""``[storage] disk_failure_policy`` (Cassandra's): what a data-disk I/O error (an SSTable read,
flush or compaction failing with EIO) or a corrupt SSTable does to the engine, per policy. A read
that cannot be answered correctly is always an error, never an answer missing a file's data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness import datapaths
from harness.run_options import RunOptions
from node.config import ConfigError, parse_config
from node.ringctl import format_status
from node.storage import Cell, CorruptSSTableError, Mutation, StorageConfig, StorageEngine
from node.storage.errors import AwaitingRepair, DiskFull, StorageError, StorageFailure
from node.storage.files import disk_admin
from storage_model import ManualClock

A_KEYS = [b"a%d" % i for i in range(5)]
B_KEYS = [b"b%d" % i for i in range(5)]


class _Policy:
    """An engine under ``policy`` with two SSTables: the a* keys (older) and the b* keys."""

    def __init__(self, path: Path, policy: str) -> None:
        self.path, self.policy = path, policy
        self.stopped: list[StorageError] = []
        self.fatal: list[StorageError] = []
        self.e = self.open()
        self.e.create_table("ks", "t")
        for keys, v in ((A_KEYS, b"A"), (B_KEYS, b"B")):
            for i, k in enumerate(keys):
                self.e.apply("ks", "t", Mutation(k, [Cell("c", v, i + 1)]))
            self.e.flush()

    def open(self) -> StorageEngine:
        e = StorageEngine(self.path, StorageConfig(disk_faults=True, disk_failure_policy=self.policy), ManualClock(),
                          on_fatal=self.fatal.append, on_disk_failure=self.stopped.append)
        e.open()
        return e

    def value(self, key: bytes) -> bytes | None:
        p = self.e.read("ks", "t", key)
        return None if p is None else p.cells["c"].value

    def b_file(self) -> Path:
        return next(self.path.glob("data/ks/t-*/2-Data.db"))


def _eio_read(s: _Policy) -> StorageFailure:
    disk_admin(s.e.files, "fail", "EIO", "data")
    with pytest.raises(StorageFailure, match="read of ks.t failed") as exc:
        s.value(B_KEYS[0])
    disk_admin(s.e.files, "heal")
    return exc.value


def test_stop_is_the_default_and_an_io_error_stops_the_node_once(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    assert StorageConfig().disk_failure_policy == "stop"
    s = _Policy(tmp_path, "stop")
    with caplog.at_level(logging.CRITICAL):
        failure = _eio_read(s)
        _eio_read(s)
    # The node's hook ran once (it stops client and internode traffic), and the engine says why.
    assert s.stopped == [failure] and s.e.disk_failure() == str(failure) and not s.fatal
    assert "stops serving client and internode traffic" in caplog.text and "stop" in caplog.text
    s.e.close()


def test_a_full_data_disk_is_not_a_disk_failure_under_stop(tmp_path: Path) -> None:
    s = _Policy(tmp_path, "stop")
    s.e.apply("ks", "t", Mutation(b"c", [Cell("c", b"C", 1)]))
    disk_admin(s.e.files, "fail", "ENOSPC", "data")
    with pytest.raises(DiskFull):
        s.e.flush()  # space may come back: the memtable is kept and flushed next round
    assert s.stopped == [] and s.e.disk_failure() is None
    s.e.close()


def test_stop_leaves_a_corrupt_sstable_to_quarantine_and_repair_and_stop_paranoid_stops(tmp_path: Path) -> None:
    for policy, stops in (("stop", False), ("stop_paranoid", True)):
        s = _Policy(tmp_path / policy, policy)
        _flip(s.b_file())
        with pytest.raises(CorruptSSTableError):
            s.value(B_KEYS[1])
        assert bool(s.stopped) == stops and s.e.held_tables(), policy  # the table's reads held either way
        s.e.close()


def test_die_ends_the_process_on_an_io_error(tmp_path: Path) -> None:
    s = _Policy(tmp_path, "die")
    failure = _eio_read(s)
    assert s.fatal == [failure] and s.stopped == []
    s.e.close()


def test_ignore_fails_only_the_reads_that_met_it(tmp_path: Path) -> None:
    s = _Policy(tmp_path, "ignore")
    _eio_read(s)
    assert s.stopped == [] and s.fatal == [] and s.e.disk_failure() is None
    assert s.value(B_KEYS[0]) == b"B" and s.value(A_KEYS[0]) == b"A"  # healed: served again
    s.e.close()


def test_best_effort_takes_a_file_that_failed_a_read_out_and_serves_the_keys_it_cannot_hold(tmp_path: Path) -> None:
    s = _Policy(tmp_path, "best_effort")
    _eio_read(s)
    assert s.stopped == [] and s.fatal == []
    # The disk answers again, but the file stays out of service: the keys it may hold are refused
    # (an answer without it could be stale), the others are served.
    assert [s.value(k) for k in A_KEYS] == [b"A"] * 5
    assert s.value(b"c9") is None  # outside its key range: it cannot hold it
    for k in B_KEYS:
        with pytest.raises(AwaitingRepair, match="2-Data.db failed a read.*best_effort"):
            s.value(k)
    assert list(s.e.out_of_service()) == ["ks.t"] and s.e.stats()["ks.t"]["out_of_service"]
    # Its file was not moved (it may be intact): a repair does not release it, a restart does.
    assert s.e.release_reads() == [] and s.b_file().exists()
    s.e.compact("ks", "t", major=True)  # compaction leaves it alone, and honours it for purges
    s.e.close()
    s.e = s.open()
    assert [s.value(k) for k in B_KEYS] == [b"B"] * 5
    s.e.close()


def test_best_effort_quarantines_a_corrupt_file_and_serves_the_rest_until_a_repair(tmp_path: Path) -> None:
    s = _Policy(tmp_path, "best_effort")
    _flip(s.b_file())
    with pytest.raises(CorruptSSTableError):
        s.value(B_KEYS[1])
    assert not list(tmp_path.glob("data/ks/t-*/2-Data.db")) and s.e.quarantined()  # moved to corrupt/
    assert [s.value(k) for k in A_KEYS] == [b"A"] * 5  # the table is not held as a whole
    with pytest.raises(AwaitingRepair, match="quarantined 2-Data.db"):
        s.value(B_KEYS[0])
    assert "ks.t" in s.e.held_tables() and s.e.holds_reads()  # so the node repairs it by itself
    assert s.e.release_reads() == ["ks.t"]  # what a scrub does once its repair refilled the table
    assert s.value(B_KEYS[0]) is None and not s.e.holds_reads()
    s.e.close()


def test_a_bad_policy_is_named_in_the_nodes_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="disk_failure_policy must be one of die, stop_paranoid, stop, best_effort, "
                                          "ignore, got 'sometimes'"):
        parse_config({"node_id": "n1", "data_dir": str(tmp_path), "storage": {"disk_failure_policy": "sometimes"}})
    cfg = parse_config({"node_id": "n1", "data_dir": str(tmp_path), "storage": {"disk_failure_policy": "best_effort"}})
    assert cfg.storage.disk_failure_policy == "best_effort"


def _flip(path: Path) -> None:
    """Flip a byte in the first record's body (its cell CRC no longer matches)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    with open(path, "r+b") as f:  # in place: the engine's mapping sees it
        f.write(bytes(data))


def test_the_disk_nemesis_campaigns_run_under_ignore() -> None:
    # The nemesis heals the data disk and expects the node served again without a restart.
    assert datapaths.node_storage(RunOptions(nemesis="disk"))["disk_failure_policy"] == "ignore"
    assert "disk_failure_policy" not in datapaths.node_storage(RunOptions(nemesis="partition"))


def test_ringctl_status_says_why_the_node_stopped() -> None:
    node = {"node_id": "n1", "state": "U", "status": "NORMAL", "address": "127.0.0.1:7000", "datacenter": "dc1",
            "rack": "r1", "load": 0, "tokens": 16, "owns": 1.0}
    assert "serves no" not in format_status({"node": "n1", "nodes": [node], "disk_failure": None})
    out = format_status({"node": "n1", "nodes": [node], "disk_failure": "read of ks.t failed: Input/output error"})
    assert out.endswith("Node n1 serves no client or internode traffic: read of ks.t failed: Input/output error")
