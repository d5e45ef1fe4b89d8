"""--coordination zookeeper over SSH: a ZooKeeper ensemble on three namespace hosts, beside the nodes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.deploy import hosts as H
from harness.zookeeper import unavailable_reason
from tests.hosts.conftest import ssh_campaign

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"ZooKeeper: {unavailable_reason()}")

ROOT = "/opt/ringlab-zk"


def test_a_zookeeper_coordinated_campaign_over_ssh_is_valid_and_leaves_nothing(
        namespace_hosts: H.HostsState, tmp_path: Path) -> None:
    # Four members and a spare, so the membership walk can join one through the leader; three
    # ZooKeeper servers on the first three hosts, killed and paused by the zk nemesis.
    proc = ssh_campaign(namespace_hosts, tmp_path, "--remote-root", ROOT, "--nodes", "4",
                        "--coordination", "zookeeper", "--zk-servers", "3", "--nemesis", "zk,membership",
                        "--nemesis-interval", "2", "--time-limit", "25", "--seed", "5", "--recovery-time", "2",
                        "--ops-per-key", "30")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (tmp_path / "latest").resolve()
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    actions = [o.get("action") for o in history if o["process"] == "nemesis" and o["type"] == "info"]
    assert {"kill-zk", "pause-zk"} & set(actions), actions
    assert "partition-zk" not in actions  # not drawn where host rules cannot separate it
    results = json.loads((run_dir / "results.json").read_text())
    assignments = results["checkers"]["assignments"]
    assert assignments["valid"] is True, assignments
    assert assignments["counts"]["registrations"] == 4, assignments
    assert assignments["counts"]["assignments"] == actions.count("join"), (assignments, actions)
    test = json.loads((run_dir / "test.json").read_text())
    assert test["options"]["coordination"] == "zookeeper"
    left = subprocess.run(["pgrep", "-f", f"{ROOT}/"], capture_output=True, text=True).stdout.strip()
    assert left == "", left
    assert not Path(ROOT).exists() or not any(Path(ROOT).iterdir())
