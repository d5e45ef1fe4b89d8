"""A campaign with the paper's ZooKeeper leader: membership changes, kills and ZooKeeper faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.zookeeper import unavailable_reason
from tests.campaign_verdicts import assert_valid_where_faults_ran

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"ZooKeeper: {unavailable_reason()}")


def test_zookeeper_coordinated_membership_campaign_is_valid_at_quorum(tmp_path: Path) -> None:
    # Four nodes of five possible, so the membership walk can join one (its tokens come from the
    # leader); seed 3 draws a removenode, a join, a ZooKeeper pause and a kill.
    cmd = [sys.executable, "-m", "harness", "run", "--coordination", "zookeeper", "--nodes", "4",
           "--nemesis", "membership,kill,zk", "--time-limit", "30", "--nemesis-interval", "2", "--seed", "3",
           "--ops-per-key", "30", "--recovery-time", "2", "--store", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout + proc.stderr
    run_dir = (tmp_path / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert_valid_where_faults_ran(proc.returncode, results, {"membership", "zk"}, out)
    test = json.loads((run_dir / "test.json").read_text())
    assert test["options"]["coordination"] == "zookeeper"
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    actions = [o.get("action") for o in history if o["process"] == "nemesis" and o["type"] == "info"]
    assert any(a in ("kill-zk", "pause-zk", "partition-zk") for a in actions), actions
    assignments = results["checkers"]["assignments"]
    assert assignments["valid"] is True, assignments
    # Every starting node registered its tokens; every join was assigned by a leader.
    assert assignments["counts"]["registrations"] == 4, assignments
    assert assignments["counts"]["assignments"] == actions.count("join"), (assignments, actions)
    # Nothing of ZooKeeper is left running.
    leftovers = subprocess.run(["pgrep", "-f", str(run_dir / "zookeeper")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
