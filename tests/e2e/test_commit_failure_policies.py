"""Cassandra's commit_failure_policy under the disk nemesis (`--commit-failure-policy`): a node
whose commit log disk breaks (EIO) exits under ``die`` and is restarted at the window's end;
under ``ignore`` it fails the writes the failure covered and carries on, serving writes again
once the disk answers, without a restart. Either way the store stays valid at QUORUM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _campaign(store: Path, policy: str) -> tuple[Path, list[dict[str, Any]]]:
    # Seed 3: the first window (1.5-3 s) breaks n4's commit log disk with EIO (the plans' first
    # draw). 3 s of workload follow its stop: a stop invoked after the time limit would never run
    # (the heal restarts the node instead), and under ignore the node must serve writes again.
    limit = "6"
    cmd = [sys.executable, "-m", "harness", "run", "--seed", "3", "--recovery-time", "1", "--store", str(store),
           "--nemesis", "disk", "--disks", "commitlog", "--commitlog-sync", "batch",
           "--commit-failure-policy", policy, "--time-limit", limit, "--nemesis-interval", "1.5"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (store / "latest").resolve()
    assert json.loads((run_dir / "results.json").read_text())["valid"] is True
    assert json.loads((run_dir / "test.json").read_text())["storage"]["node"]["commit_failure_policy"] == policy
    return run_dir, [json.loads(line) for line in (run_dir / "history.jsonl").open()]


def _eio_window(history: list[dict[str, Any]]) -> tuple[str, dict[str, Any], float]:
    """The node of the first EIO window, its stop step's value and the stop's completion time."""
    steps = [o for o in history if o["process"] == "nemesis" and o["type"] == "info"]
    i = next(i for i, o in enumerate(steps) if o["f"] == "start-disk" and o["value"]["disk_error"] == "EIO")
    nid = steps[i]["value"]["node"]
    stop = next(o for o in steps[i:] if o["f"] == "stop-disk")
    return nid, stop["value"], stop["time"]


@pytest.mark.parametrize("policy", ["die", "ignore"])
def test_the_policy_decides_what_a_broken_commit_log_disk_does(tmp_path: Path, policy: str) -> None:
    run_dir, history = _campaign(tmp_path, policy)
    nid, stop, healed_at = _eio_window(history)
    verdict = stop["policies"][nid]
    assert verdict["policy"] == policy and verdict["held"] is True, stop
    node_log = "".join(p.read_text() for p in (run_dir / "nodes" / nid).glob("*.log"))
    if policy == "die":
        assert verdict["seen"] == "the node exited" and nid in stop["restarted"], stop
        assert "commit_failure_policy = die" in node_log and "exiting" in node_log
    else:
        assert verdict["seen"].startswith("serving") and nid not in stop["restarted"], stop
        assert "commit log failure ignored (commit_failure_policy = ignore)" in node_log
        # No restart, and the node coordinates acknowledged writes again once its disk answers.
        assert any(o["type"] == "ok" and o["f"] == "write" and o.get("node") == nid and o["time"] > healed_at
                   for o in history if o["process"] != "nemesis"), "no write through the node after the heal"
