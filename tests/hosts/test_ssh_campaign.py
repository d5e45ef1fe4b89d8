"""A whole `harness run --deploy ssh` campaign on namespace hosts: real SSH, real iptables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.deploy import hosts as H
from tests.hosts.conftest import ssh_campaign



def test_register_campaign_over_ssh_is_valid_and_partitions_really_drop(
        namespace_hosts: H.HostsState, tmp_path: Path) -> None:
    state = namespace_hosts
    proc = ssh_campaign(state, tmp_path, "--remote-root", "/opt/ringlab-campaign",
                        "--workload", "register", "--nemesis", "partition,kill,pause", "--partition", "majority",
                        "--nemesis-interval", "2", "--time-limit", "20", "--seed", "11", "--recovery-time", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (tmp_path / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    cuts = [o for o in history if o["process"] == "nemesis" and o["f"] == "start-partition" and o["type"] == "info"]
    assert cuts and all(o["value"]["grudge"] for o in cuts), cuts
    # Every heal (a stop-partition, or the final heal) records the iptables DROP counters it read.
    counted = [o["value"]["dropped_packets"] for o in history
               if o["process"] == "nemesis" and o["f"] == "stop-partition" and isinstance(o["value"], dict)]
    counted += [o["value"]["partition_result"] for o in history
                if o["process"] == "nemesis" and o["f"] == "heal" and o["value"].get("partition_result")]
    dropped = sum(n for per_dst in counted for srcs in per_dst.values() for n in srcs.values())
    assert dropped > 0, counted
    # Logs came back from every host, and nothing of ours is left on them.
    for nid in ("n1", "n2", "n3", "n4", "n5"):
        assert any((run_dir / "nodes" / nid).rglob("*.log")), nid
        assert not Path("/opt/ringlab-campaign", nid).exists()
    rules = subprocess.run(["ip", "netns", "exec", state.hosts[0].netns, "iptables", "-S"],
                           capture_output=True, text=True).stdout
    assert "-j DROP" not in rules, rules
