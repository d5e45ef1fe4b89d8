"""Campaigns that reach the data paths: flush and compaction, repair, damaged files, crashes that
lose unsynced writes. Each shows its nemesis's effect in the history, and the unmodified store
at QUORUM stays valid. (That periodic mode really loses unsynced writes in a crash, and batch
mode does not, is shown deterministically in tests/cluster/test_unsynced_loss.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def campaign(store: Path, *args: str) -> tuple[int, dict[str, Any], dict[str, Any], list[dict[str, Any]], str]:
    """Run one campaign as a user would; returns (exit code, results, test.json, history, output)."""
    cmd = [sys.executable, "-m", "harness", "run", "--seed", "7", "--recovery-time", "2", "--store", str(store), *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout + proc.stderr
    latest = store / "latest"
    assert latest.exists(), out
    run_dir = latest.resolve()
    assert (run_dir / "results.json").exists(), f"exit {proc.returncode}, no results.json: {out}"
    results = json.loads((run_dir / "results.json").read_text())
    test = json.loads((run_dir / "test.json").read_text())
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    return proc.returncode, results, test, history, out


def nemesis_ops(history: list[dict[str, Any]], f: str) -> list[dict[str, Any]]:
    """Completed nemesis steps named ``f``."""
    return [o for o in history if o["process"] == "nemesis" and o["type"] == "info" and o["f"] == f]


def test_flush_compact_repair_and_corrupt_at_quorum_stay_valid(tmp_path: Path) -> None:
    code, results, test, history, out = campaign(
        tmp_path, "--nemesis", "flush-compact,repair,corrupt", "--corrupt-modes", "stopped", "--time-limit", "20",
        "--nemesis-interval", "1")
    assert code == 0, out
    assert results["valid"] is True
    # The campaign storage settings are recorded.
    assert test["storage"]["node"]["memtable_flush_threshold_kb"] == 4
    assert test["storage"]["table"] == {"gc_grace_seconds": 10}
    assert test["options"]["memtable_flush_kb"] == 4 and test["options"]["gc_grace"] == 10

    [flush, *_] = nemesis_ops(history, "start-flush-compact")
    assert any((r.get("sstables") or 0) >= 1 for r in flush["value"]["result"].values()), flush
    [compact, *_] = nemesis_ops(history, "stop-flush-compact")
    assert any(r.get("compacted") for r in compact["value"]["result"].values()), compact

    [repair, *_] = nemesis_ops(history, "start-repair")
    assert repair["value"]["result"]["ranges"] > 0 and repair["value"]["result"]["skipped_replicas"] == []

    corrupts = nemesis_ops(history, "start-corrupt")
    assert corrupts
    for c in corrupts:
        v = c["value"]
        assert v["file"] and v["size"] > 0 and v["action"] in ("bitflip", "truncate") and v["offsets"]
        # A damaged file is refused; only a cut at a record boundary looks like a clean end.
        assert v["outcome"] == "refused" or (v["action"] == "truncate" and v["outcome"] == "not detected"), v
    for s in nemesis_ops(history, "stop-corrupt"):
        for r in s["value"]["result"].values():
            assert "error" not in r and r["repair"]["ranges"] > 0, s
    # Never wrong data: no phantom read, no lost write, every read linearizable.
    assert results["checkers"]["lww"]["counts"]["phantom-read"] == 0
    assert results["checkers"]["lww"]["counts"]["lost-write"] == 0


def test_crash_in_periodic_mode_is_valid_with_losses_allowed(tmp_path: Path) -> None:
    code, results, test, history, out = campaign(
        tmp_path, "--nemesis", "crash", "--commitlog-sync", "periodic", "--time-limit", "15", "--nemesis-interval", "2")
    assert code == 0, out
    assert results["valid"] is True
    assert test["storage"]["node"]["volatile_unsynced"] is True
    assert results["params"]["commitlog_sync"] == "periodic"
    crashes = nemesis_ops(history, "start-crash")
    assert crashes and all(c["value"]["lost_unsynced"] is True for c in crashes)
    assert all(c["value"]["commitlog_sync"] == ["periodic"] for c in crashes)
    d = results["checkers"]["durability"]
    assert d["counts"]["crashes"] == len(crashes)
    assert "periodic" in d["details"]["note"]
    # Whatever a crash cost is counted as allowed, never left as an anomaly.
    for name in ("lww", "quorum"):
        assert results["checkers"][name]["anomalies"] == []


def test_crash_in_batch_mode_loses_no_acknowledged_write(tmp_path: Path) -> None:
    code, results, test, history, out = campaign(
        tmp_path, "--nemesis", "crash", "--commitlog-sync", "batch", "--time-limit", "15", "--nemesis-interval", "2")
    assert code == 0, out
    assert results["valid"] is True
    crashes = nemesis_ops(history, "start-crash")
    assert crashes and all(c["value"]["lost_unsynced"] is True for c in crashes)
    assert all(c["value"]["commitlog_sync"] == ["batch"] for c in crashes)
    d = results["checkers"]["durability"]
    assert d["counts"]["allowed_by_periodic"] == 0
    assert not any(k.startswith("periodic-") for c in results["checkers"].values() for k in c["counts"])
    restarts = nemesis_ops(history, "stop-crash")
    assert restarts and all(r["value"]["replay"][n] is not None for r in restarts for n in r["value"]["nodes"])
