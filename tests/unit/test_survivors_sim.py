"""End to end in the simulator (one deterministic seed): every view the liveness probe records
carries the node's failure-detector account and every node's SSTables are reported beside a count
from their data; both are judged valid, and the same records forged to hold an outage in a
window, or a max timestamp older than the data's, are not."""

from __future__ import annotations

import json
from pathlib import Path

from checkers import convergence, liveness, sstable_stats
from harness import store
from harness.deploy.sim import run_one
from harness.history import HistoryFile
from harness.liveness_probe import LIVENESS_FILE
from harness.run import RunOptions


def test_detector_windows_and_sstable_statistics_are_recorded_judged_and_forgeries_caught(tmp_path: Path) -> None:
    # One node paused for 6 s at a time (its peers' windows must leave the gap out), with
    # flushes at 4 KB and row deletes, so every node holds SSTables with tombstones at the end.
    opts = RunOptions(deploy="sim", seed=3, time_limit=16, nemesis="pause,flush-compact", targets="one",
                      nemesis_interval=6, key_count=20, delete_fraction=0.2, memtable_flush_kb=4, gc_grace=60,
                      concurrency="1n", rate=40, recovery_time=1, store=str(tmp_path), test_name="t")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True)
    results = store.read_json(run_dir / store.RESULTS_FILE)["checkers"]
    live, conv = results["liveness"], results["convergence"]
    assert live["valid"] is True and conv["valid"] is True, (live["anomalies"], conv["anomalies"])
    assert live["counts"]["fd_judged"] > 0 and conv["counts"]["sstables_judged"] > 0

    ops = list(HistoryFile(run_dir / store.HISTORY_FILE))
    samples = [json.loads(line) for line in (run_dir / LIVENESS_FILE).read_text().splitlines()]
    longest = max(e[2] for r in samples if r.get("type") == "view" for e in r["fd"]["peers"].values())
    assert longest <= max(r["fd"]["max_interval_s"] for r in samples if r.get("type") == "view") + 1e-3
    # The detector as it would be had it recorded the pause: one window holding a 6 s interval.
    view = next(r for r in samples if r.get("type") == "view" and r["fd"]["peers"])
    peer = sorted(view["fd"]["peers"])[0]
    view["fd"]["peers"][peer][2] = 6.0
    r = liveness.check(ops, {"liveness_samples": samples})
    assert r.valid is False and r.counts["fd-outage-recorded"] == 1

    records = convergence.load_snapshots(run_dir / convergence.SNAPSHOT_FILE)
    after = next(r for r in records if r.get("type") == "pass" and r["pass"] == "after")
    node, st = next((n, s) for n, s in sorted(after["storage_health"].items()) if isinstance(s, dict) and s["sstables"])
    row = next(row for rows in st["sstables"].values() for row in rows if row.get("scan", {}).get("max_timestamp"))
    row["stats"]["max_timestamp"] = row["scan"]["max_timestamp"] - 1
    r = convergence.check(ops, {"model": "register", "replica_snapshots": records})
    assert r.valid is False and r.counts[sstable_stats.KIND] == 1
