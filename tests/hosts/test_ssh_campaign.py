"""A whole `harness run --deploy ssh` campaign on namespace hosts: real SSH, real iptables, and
latency through a Toxiproxy-compatible server on each host (--host-toxiproxy)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.deploy import hosts as H
from tests.campaign_verdicts import assert_valid_where_faults_ran
from tests.hosts.conftest import ssh_campaign
from tests.hosts.host_toxiproxies import API_PORT, host_toxiproxies, proxies_left  # noqa: F401 - a fixture


def test_register_campaign_over_ssh_is_valid_and_partitions_really_drop(
        namespace_hosts: H.HostsState, host_toxiproxies: list[str], tmp_path: Path) -> None:
    state = namespace_hosts
    # Four nemeses every 2 s: seed 11 draws pause, partition, latency, kill; a partition's heal
    # reads DROP counters over SSH (4 s on a loaded machine), so the kill starts at about 22 s.
    proc = ssh_campaign(state, tmp_path, "--remote-root", "/opt/ringlab-campaign", "--host-toxiproxy", str(API_PORT),
                        "--workload", "register", "--nemesis", "partition,kill,pause,latency", "--partition", "majority",
                        "--nemesis-interval", "2", "--time-limit", "26", "--seed", "11", "--recovery-time", "2")
    out = proc.stdout + proc.stderr
    run_dir = (tmp_path / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert_valid_where_faults_ran(proc.returncode, results, {"partition", "latency"}, out)
    # Latency took effect through each host's link proxies, every node routed through its own.
    assert results["checkers"]["campaign"]["details"]["effective"]["latency"] >= 1, results["checkers"]["campaign"]
    log = (run_dir / "harness.log").read_text()
    assert all(f"{nid} routes its peers through its host's link proxies: " in log for nid in ("n1", "n2", "n3", "n4", "n5"))
    assert proxies_left(host_toxiproxies) == [[]] * 5  # teardown removed every link proxy
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
