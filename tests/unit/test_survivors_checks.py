"""The detector's arrival window and the SSTables' recorded statistics, as a node reports them
(``status`` with ``failure_detector``, ``storage`` with ``sstables``), and the checks that hold
them to their contracts: checkers/liveness.py's ``fd-outage-recorded`` and
checkers/sstable_stats.py's ``sstable-metadata-wrong``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from checkers import liveness, sstable_stats
from checkers.result import AnomalyLog
from harness.liveness_probe import detector_record
from node.cluster.failure_detector import PhiAccrualFailureDetector
from node.protocol import InvalidRequest
from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.cells import RangeTombstone
from node.storage_admin import storage_ops
from storage_model import ManualClock

S = 1_000_000_000


# ---- the failure detector's window

def test_window_stats_leave_out_an_outage_longer_than_the_max_interval() -> None:
    fd = PhiAccrualFailureDetector(bootstrap_interval=0.5, max_interval=1.0)
    for t in (0.0, 0.4, 0.8, 1.2):
        fd.heartbeat("n2", t)
    fd.heartbeat("n2", 27.2)  # back after a 26 s pause: not a sample of the arrival rate
    fd.heartbeat("n2", 27.6)
    mean, longest, count = fd.window_stats("n2")  # type: ignore[misc]
    # bootstrap 0.5, then 0.4 four times (the 26 s gap is not recorded)
    assert count == 5 and longest == pytest.approx(0.5) and mean == pytest.approx((0.5 + 4 * 0.4) / 5)
    assert fd.window_stats("n9") is None


# ---- fd-outage-recorded

def _views(peers_by_time: dict[float, dict[str, list[Any]]], max_interval: float = 1.0,
           bootstrap: float = 1.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "header", "gossip_interval_s": 1.0}]
    for t, peers in sorted(peers_by_time.items()):
        out.append({"type": "view", "node": "n1", "sent_ns": int(t * S), "recv_ns": int(t * S) + S // 100,
                    "view": {p: ["U", "NORMAL"] for p in peers},
                    "fd": {"max_interval_s": max_interval, "bootstrap_interval_s": bootstrap, "threshold": 8.0,
                           "peers": peers}})
    return out


def test_windows_within_the_detector_limit_are_judged_valid() -> None:
    samples = _views({1.0: {"n2": [0.1, 0.4, 1.0, 30]}, 2.0: {"n2": [0.2, 0.41, 1.0004, 33], "n3": [0.0, 0.3, 0.9, 3]}})
    r = liveness.check([], {"liveness_samples": samples})
    assert r.valid is True and r.counts["fd_judged"] == 3 and r.counts["fd-outage-recorded"] == 0


def test_an_outage_in_the_window_is_flagged_once_per_pair() -> None:
    samples = _views({1.0: {"n2": [0.1, 0.4, 1.0, 30]},
                      30.0: {"n2": [0.3, 0.95, 26.3, 31], "n3": [0.1, 0.4, 1.0, 40]},
                      31.0: {"n2": [0.2, 0.94, 26.3, 32]}})
    r = liveness.check([], {"liveness_samples": samples})
    assert r.valid is False and r.counts["fd-outage-recorded"] == 1
    a = r.anomalies[0]
    assert a.kind == "fd-outage-recorded" and a.details["peer"] == "n2" and a.details["max_interval_s"] == 26.3


def test_the_bootstrap_interval_is_allowed_and_views_without_an_account_are_not_judged() -> None:
    samples = _views({1.0: {"n2": [0.1, 0.9, 2.0, 3]}}, max_interval=1.0, bootstrap=2.0)
    samples.append({"type": "view", "node": "n2", "sent_ns": S, "recv_ns": S, "view": {"n1": ["U", "NORMAL"]}})
    r = liveness.check([], {"liveness_samples": samples})
    assert r.valid is True and r.counts["fd_judged"] == 1


def test_detector_record_keeps_what_the_check_needs() -> None:
    fd = {"threshold": 8.0, "max_interval_s": 1.0, "bootstrap_interval_s": 1.0, "window": 1000,
          "peers": {"n2": {"phi": 0.5, "mean_interval_s": 0.4, "max_interval_s": 1.0, "intervals": 12}}}
    assert detector_record(fd) == {"max_interval_s": 1.0, "bootstrap_interval_s": 1.0, "threshold": 8.0,
                                   "peers": {"n2": [0.5, 0.4, 1.0, 12]}}
    assert detector_record(None) is None and detector_record({"peers": 3}) is None


# ---- SSTable statistics, recorded and counted from the data

def _engine(tmp_path: Path) -> StorageEngine:
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock())
    e.open()
    e.create_table("ks", "t")
    return e


def test_the_storage_op_reports_each_sstable_and_its_scan_agrees(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    try:
        e.apply("ks", "t", Mutation(b"a", [Cell("c", b"v", 10), Cell("d", None, 12, None, 5)]))
        e.apply("ks", "t", Mutation(b"b", [Cell("c", b"w", 11)]))
        # The newest stamp of the file is a row delete, then one with only range tombstones.
        e.apply("ks", "t", Mutation(b"c", [], 40, 7))
        e.apply("ks", "t", Mutation(b"d", [], None, None, [RangeTombstone("p", 30, 6)]))
        e.flush()
        e.apply("ks", "t", Mutation(b"e", [], 50, 8))  # a file of one row delete
        e.flush()
        ops = storage_ops(SimpleNamespace(engine=e))
        out = trio.run(ops["storage"], {"sstables": True})
        rows = out["sstables"]["ks.t"]
        assert len(rows) == 2
        for row in rows:
            assert {k: row["stats"][k] for k in row["scan"]} == row["scan"], row
        by_max = {row["scan"]["max_timestamp"]: row for row in rows}
        assert set(by_max) == {40, 50}
        first = by_max[40]["scan"]
        assert first == {"partitions": 4, "cells": 3, "tombstones": 3, "min_timestamp": 10, "max_timestamp": 40,
                         "max_local_deletion_time": 7, "first_key": first["first_key"], "last_key": first["last_key"]}
        assert isinstance(first["first_key"], str)  # hex, as a tool prints it
        log = AnomalyLog()
        assert sstable_stats.judge({"n1": {"sstables": out["sstables"]}}, log)["sstables_judged"] == 2
        assert not log.counts
        assert "sstables" not in trio.run(ops["storage"], {})  # only when asked
        with pytest.raises(InvalidRequest, match="sstables must be a bool"):
            trio.run(ops["storage"], {"sstables": "yes"})
    finally:
        e.close()


def _row(stats: dict[str, Any], scan: dict[str, Any] | None, error: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"sstable": "/x/ks/t-1/7-Data.db", "stats": stats}
    if scan is not None:
        row["scan"] = scan
    if error is not None:
        row["scan_error"] = error
    return row


BASE = {"partitions": 3, "cells": 5, "tombstones": 1, "min_timestamp": 10, "max_timestamp": 40,
        "max_local_deletion_time": 7, "first_key": "61", "last_key": "63"}


@pytest.mark.parametrize("field,recorded", [("max_timestamp", 30), ("max_timestamp", None), ("min_timestamp", 12),
                                            ("tombstones", 0), ("partitions", 2), ("last_key", "62"),
                                            ("max_local_deletion_time", None)])
def test_a_statistic_the_data_contradicts_is_sstable_metadata_wrong(field: str, recorded: Any) -> None:
    log = AnomalyLog()
    counts = sstable_stats.judge({"n1": {"sstables": {"ks.t": [_row({**BASE, field: recorded}, dict(BASE))]}}}, log)
    assert counts["sstables_judged"] == 1 and log.count(sstable_stats.KIND) == 1
    a = log.examples[0]
    assert a.details["sstable"] == "7-Data.db" and field in a.details["fields"]


def test_agreeing_unscanned_or_timestampless_files_are_not_flagged() -> None:
    log = AnomalyLog()
    none_ts = {**BASE, "min_timestamp": None, "max_timestamp": None}
    health = {"n1": {"sstables": {"ks.t": [_row(dict(BASE), dict(BASE)), _row(none_ts, none_ts),
                                           _row({**BASE, "max_timestamp": 1}, None, "OSError: EIO")]}},
              "n2": "ReadTimeout: no answer"}
    counts = sstable_stats.judge(health, log)
    assert counts == {"sstables_judged": 2, "sstable_scan_errors": 1} and not log.counts
