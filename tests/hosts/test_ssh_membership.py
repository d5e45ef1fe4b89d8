"""The membership nemesis over SSH: four of the five namespace hosts start nodes, the fifth is a
spare a node joins on; partitions and teardown cover every host, the spare included."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from harness.deploy import hosts as H
from tests.hosts.conftest import only_sshd_left, ssh_campaign

pytestmark = pytest.mark.hosts

REMOTE_ROOT = Path("/opt/ringlab-membership")


def test_membership_campaign_over_ssh_joins_on_the_spare_host_and_leaves_nothing(
        namespace_hosts: H.HostsState, tmp_path: Path) -> None:
    state = namespace_hosts
    # Seed 1: a decommission (n4) at ~3 s, the join of a node on the spare host (n5) at ~12 s, a
    # partition over the four members at ~21 s, then (timing allowing) a removenode, which the
    # time limit lets finish.
    proc = ssh_campaign(state, tmp_path, "--nodes", "4", "--remote-root", str(REMOTE_ROOT),
                        "--workload", "register", "--nemesis", "membership,partition", "--partition", "majority",
                        "--read-cl", "QUORUM", "--write-cl", "QUORUM",
                        "--nemesis-interval", "3", "--time-limit", "30", "--seed", "1", "--recovery-time", "2",
                        timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (tmp_path / "latest").resolve()
    assert json.loads((run_dir / "results.json").read_text())["valid"] is True
    test = json.loads((run_dir / "test.json").read_text())
    assert {nid: d["role"] for nid, d in test["nodes"].items()} == {
        "n1": "member", "n2": "member", "n3": "member", "n4": "member", "n5": "spare"}
    assert test["params"]["nodes"] == 4

    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    nemesis = [o for o in history if o["process"] == "nemesis" and o["type"] == "info"]
    changes = [o for o in nemesis if o.get("action") in ("join", "decommission", "removenode")
               and "error" not in o["value"]]
    assert changes, nemesis
    joins = [o for o in changes if o["action"] == "join"]
    # One spare host, never reused: exactly one node can join, and it is the spare's.
    assert [o["value"]["node"] for o in joins] == ["n5"], nemesis
    joined_at = joins[0]["index"]
    # A partition after the join cuts the newcomer too, and its iptables rules really dropped packets.
    later_cuts = [o for o in nemesis if o["f"] == "start-partition" and o["index"] > joined_at]
    assert later_cuts and all("n5" in o["value"]["grudge"] for o in later_cuts), nemesis
    # Drop counters are read at every heal (a stop-partition, or the final heal): dst → src → packets.
    counted = [o["value"]["dropped_packets"] for o in nemesis
               if o["f"] == "stop-partition" and o["index"] > joined_at and isinstance(o["value"], dict)]
    counted += [o["value"]["partition_result"] for o in nemesis if o["f"] == "heal" and o["value"].get("partition_result")]
    assert any(n > 0 and "n5" in (src, dst) for per_dst in counted for dst, srcs in per_dst.items()
               for src, n in srcs.items()), counted

    # Logs and configs of every node that ever ran came back, the joiner's bootstrapping.
    for nid in ("n1", "n2", "n3", "n4", "n5"):
        assert "ready" in (run_dir / "nodes" / nid / "node.log").read_text(), nid
    assert "auto_bootstrap = true" in (run_dir / "nodes" / "n5" / "node.toml").read_text()
    assert "auto_bootstrap = false" in (run_dir / "nodes" / "n1" / "node.toml").read_text()

    # Nothing of ours is left on any host, the spare included: no directory, rule, chain or process.
    assert not REMOTE_ROOT.exists()
    for h in state.hosts:
        rules = subprocess.run(["ip", "netns", "exec", h.netns, "iptables", "-w", "-S"],
                               capture_output=True, text=True, check=True).stdout
        assert "RINGLAB" not in rules and "-j DROP" not in rules, (h.name, rules)
    assert only_sshd_left(state) == {}
