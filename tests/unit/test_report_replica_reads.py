"""The report puts beside each finding what every replica of its key held when the harness read
the replicas directly (replicas.jsonl; issue 18): a run checked by the real checkers, on
hand-made history and snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import store
from harness.history import Op, write_jsonl
from harness.report import render, replica_reads
from harness.run import check_run

REPLICAS = ["n1", "n2", "n3"]


def w(i: int, t_ms: int, key: Any, value: Any, ts: int, acked: list[str], f: str = "write") -> list[Op]:
    return [Op(i, t_ms * 1_000_000, i, "invoke", f, key, value, node=acked[0], cl="QUORUM"),
            Op(i + 1, t_ms * 1_000_000 + 500_000, i, "ok", f, key, value, node=acked[0], cl="QUORUM", timestamp=ts,
               extra={"replicas": REPLICAS, "acked": acked})]


def r(i: int, t_ms: int, key: Any, value: Any, ts: int) -> list[Op]:
    return [Op(i, t_ms * 1_000_000, i, "invoke", "read", key, None, node="n3", cl="QUORUM"),
            Op(i + 1, t_ms * 1_000_000 + 500_000, i, "ok", "read", key, value, node="n3", cl="QUORUM", timestamp=ts)]


def cell(value: Any, ts: int) -> list[Any]:
    return ["v", value, ts, False, None]


def snapshot_lines(passes: dict[str, dict[str, dict[Any, list[list[Any]]]]], workload: dict[str, Any]) -> list[str]:
    out = []
    for label, nodes in passes.items():
        out.append(json.dumps({"type": "pass", "pass": label, "workload": workload, "keys": 2}))
        for node, keys in nodes.items():
            for key, cells in keys.items():
                out.append(json.dumps({"type": "replica", "pass": label, "key": key, "node": node, "replicas": REPLICAS,
                                       "range": ["-1", "1"], "cells": cells, "partition_tombstone": None}))
    return out


def register_run(root: Path) -> Path:
    """Key 7's write of 2 was acknowledged by n1 alone, a QUORUM read then returned 1; n3 never
    got the write. Key 8 is fine and has no finding."""
    run = store.new_run_dir(root, "register-latency")
    ops = w(0, 1, 7, 1, 100, ["n1", "n2"]) + w(2, 3, 7, 2, 200, ["n1"]) + r(4, 5, 7, 1, 100) \
        + w(6, 7, 8, 1, 300, ["n2", "n3"]) + r(8, 9, 8, 1, 300)
    write_jsonl(ops, run / store.HISTORY_FILE)
    store.write_json(run / store.TEST_FILE, {"name": "register-latency", "params": {
        "model": "register", "replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"}})
    lines = snapshot_lines({
        "before": {"n1": {7: [cell(2, 200)], 8: [cell(1, 300)]}, "n2": {7: [cell(1, 100)], 8: [cell(1, 300)]},
                   "n3": {7: [], 8: [cell(1, 300)]}},
        "after": {"n1": {7: [cell(2, 200)], 8: [cell(1, 300)]}, "n2": {7: [cell(2, 200)], 8: [cell(1, 300)]},
                  "n3": {7: [cell(2, 200)], 8: [cell(1, 300)]}},
    }, {"model": "register", "column": "v"})
    (run / replica_reads.SNAPSHOT_FILE).write_text("\n".join(lines) + "\n")
    return run


def test_a_findings_key_gets_each_replicas_reads_beside_it(tmp_path: Path) -> None:
    run = register_run(tmp_path)
    composed = check_run(run)
    assert composed.valid is False
    data = render.collect(run)
    quorum = next(c for c in data["checkers"] if c["name"] == "quorum")
    [stale] = [a for a in quorum["anomalies"] if a["kind"] == "stale-read"]
    assert stale["key"] == 7 and stale["replica_reads"] == "7"
    reads = data["replica_reads"]
    assert reads["passes"] == ["before", "after"]
    assert list(reads["keys"]) == ["7"]  # key 8 has no finding: its reads stay out of the page
    by_pass = reads["keys"]["7"]["reads"]
    assert reads["keys"]["7"]["replicas"] == REPLICAS
    assert by_pass["before"] == {"n1": {"value": 2, "timestamp": 200, "tombstone": False},
                                 "n2": {"value": 1, "timestamp": 100, "tombstone": False},
                                 "n3": {"value": None, "timestamp": None, "tombstone": False}}
    assert {n: h["value"] for n, h in by_pass["after"].items()} == {"n1": 2, "n2": 2, "n3": 2}


def test_set_findings_name_which_replicas_hold_their_elements(tmp_path: Path) -> None:
    run = store.new_run_dir(tmp_path, "set")
    lines = snapshot_lines({"after": {"n1": {"s": [["e003", None, 5, False, None], ["e004", None, 6, False, None]]},
                                      "n2": {"s": [["e003", None, 5, False, None], ["e004", None, 6, True, None]]}}},
                           {"model": "set", "element_prefix": "e", "element_digits": 3})
    (run / replica_reads.SNAPSHOT_FILE).write_text("\n".join(lines) + "\n")
    finding = {"kind": "lost", "key": "s", "ops": [{"index": 1, "f": "add", "value": 4, "type": "ok"},
                                                   {"index": 3, "f": "add", "value": 9, "type": "info"}]}
    reads = replica_reads.attach(run, [{"anomalies": [finding]}])
    assert finding["replica_reads"] == '"s"'
    assert reads["keys"]['"s"']["reads"]["after"] == {
        "n1": {"elements": 2, "held": [4], "lacks": [9]},
        "n2": {"elements": 1, "held": [], "lacks": [4, 9]}}  # a deleted cell is no element


def test_torn_lines_unreadable_replicas_and_escapes(tmp_path: Path) -> None:
    run = store.new_run_dir(tmp_path, "t")
    lines = snapshot_lines({"after": {"n1": {5: [cell("x", 9)]}}}, {"model": "register", "column": "v"})
    lines.append(json.dumps({"type": "replica", "pass": "after", "key": 5, "node": "n2", "replicas": REPLICAS,
                             "error": "ReadTimeout"}))
    (run / replica_reads.SNAPSHOT_FILE).write_text("\n".join(lines) + '\n{"type": "replica", "pa')  # interrupted mid-line
    finding: dict[str, Any] = {"key": 5}
    reads = replica_reads.attach(run, [{"anomalies": [finding], "expected": [{"key": None}]}])
    assert reads["keys"]["5"]["reads"]["after"] == {"n1": {"value": "x", "timestamp": 9, "tombstone": False},
                                                   "n2": {"error": "ReadTimeout"}}
    # A run without snapshots, or whose snapshots are a symlink out of it, gets no reads.
    other = store.new_run_dir(tmp_path, "u")
    assert replica_reads.attach(other, [{"anomalies": [{"key": 5}]}]) == {}
    (other / replica_reads.SNAPSHOT_FILE).symlink_to(run / replica_reads.SNAPSHOT_FILE)
    assert replica_reads.attach(other, [{"anomalies": [{"key": 5}]}]) == {}
