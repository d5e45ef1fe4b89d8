"""A snapshot pass dated on the history's own clock (``history_ns``, what harness sim records:
its history runs on virtual time) lets gc_grace purges be judged without a wall clock in common."""

from __future__ import annotations

from typing import Any

from checkers import convergence, gcgrace
from harness.history import Op

S = 1_000_000_000
REG = {"model": "register", "column": "v"}
NODES = ("n1", "n2", "n3")


def _history(delete_at_ns: int) -> list[Op]:
    return [Op(0, 1, 0, "invoke", "write", 1, 7, node="n1"), Op(1, 2, 0, "ok", "write", 1, 7, node="n1", timestamp=100),
            Op(2, delete_at_ns, 0, "invoke", "delete", 1, None, node="n2"),
            Op(3, delete_at_ns + 1, 0, "ok", "delete", 1, None, node="n2", timestamp=200)]


def _snapshots(at_ns: int) -> list[dict[str, Any]]:
    """The before pass only: every replica holds nothing for the deleted key (its tombstone gone)."""
    head = {"type": "pass", "pass": "before", "read_repair": "BLOCKING", "workload": REG, "time": 5e9,
            "history_ns": at_ns, "hints_held": {"targets": []}}
    return [head] + [{"type": "replica", "pass": "before", "key": 1, "node": n, "replicas": list(NODES),
                      "range": ["-5", "7"], "cells": [], "partition_tombstone": None} for n in NODES]


def _lost(delete_at_s: float, at_s: float) -> int:
    res = convergence.check(_history(int(delete_at_s * S)), {"replica_snapshots": _snapshots(int(at_s * S)),
                                                            "gc_grace_seconds": 10})
    return res.counts.get("replica-lost-write", 0)


def test_history_ns_dates_a_pass_without_history_start_time() -> None:
    assert gcgrace.pass_times({"before": {"history_ns": 42, "time": 9e9}}, None) == {"before": 42}
    assert gcgrace.pass_times({"before": {"time": 1_003.0}}, 1_000.0) == {"before": 3 * S}
    assert gcgrace.pass_times({"before": {"time": 1_003.0}}, None) == {}


def test_a_tombstone_gone_after_gc_grace_is_a_purge_and_gone_within_it_a_lost_delete() -> None:
    assert _lost(delete_at_s=1, at_s=20) == 0  # 19 s > gc_grace 10 s: compaction may purge it
    assert _lost(delete_at_s=1, at_s=5) == 3   # 4 s: every replica lost the acknowledged delete
