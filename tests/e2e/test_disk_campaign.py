"""The disk nemesis: a node's commit log disk fails (ENOSPC or EIO on every write and fsync) for a
window, the node names the failure, stops acknowledging writes, keeps the cluster valid at QUORUM,
and is healed and restarted when the window ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_failing_disk_is_named_and_the_store_stays_valid_at_quorum(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "harness", "run", "--seed", "7", "--recovery-time", "2", "--store", str(tmp_path),
           "--nemesis", "disk", "--disks", "commitlog", "--commitlog-sync", "batch", "--time-limit", "8",
           "--nemesis-interval", "2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (tmp_path / "latest").resolve()
    assert json.loads((run_dir / "results.json").read_text())["valid"] is True
    assert json.loads((run_dir / "test.json").read_text())["storage"]["node"]["disk_faults"] is True
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    steps = [o for o in history if o["process"] == "nemesis" and o["type"] == "info"]
    fails = [o["value"] for o in steps if o["f"] == "start-disk"]
    heals = [o["value"] for o in steps if o["f"] == "stop-disk"]
    assert fails and heals, steps
    assert all(v["said"]["failing"] == v["disk_error"] for v in fails)
    # The failure happened: the failing node refused commit log calls and said why in its log.
    refused = {n: r["failed_calls"] for h in heals for n, r in h["result"].items() if "failed_calls" in r}
    assert sum(refused.values()) >= 1, heals
    victim = next(n for n, c in refused.items() if c)
    node_log = "".join(p.read_text() for p in (run_dir / "nodes" / victim).glob("*.log"))
    assert "disk nemesis" in node_log and "commit_failure_policy = stop" in node_log
    assert "disk of" in (run_dir / "report.html").read_text()  # the timeline names the step
    # Reads kept being served through the failing node while its disk failed.
    start = next(o["time"] for o in steps if o["f"] == "start-disk" and o["value"]["node"] == victim)
    stop = next(o["time"] for o in history if o["process"] == "nemesis" and o["f"] == "stop-disk"
                and o["time"] > start)  # its invocation: the heal and restart come after it
    reads = [o for o in history if o["process"] != "nemesis" and o["f"] == "read" and o.get("node") == victim
             and start <= o["time"] <= stop]
    assert any(o["type"] == "ok" for o in reads), reads[:5]
