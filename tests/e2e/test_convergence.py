"""End-to-end: the per-replica convergence check sees inside the cluster.

A correct store converges on every replica after partitions and kills; a store that skips read
repair, or takes over ranges without streaming them, leaves replicas wrong while client reads
(which merge replicas) can still look right, and the convergence check names the key, the
replica and what it lacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.test_campaigns import anomaly_kinds, harness


def _run(store: Path, *args: str) -> tuple[int, dict[str, Any], Path, str]:
    proc = harness("run", "--recovery-time", "2", *args, store=store)
    run_dir = (store / "latest").resolve()
    assert (run_dir / "results.json").exists(), proc.stdout + proc.stderr
    return proc.returncode, json.loads((run_dir / "results.json").read_text()), run_dir, proc.stdout + proc.stderr


def _passes(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in (run_dir / "replicas.jsonl").open():
        rec = json.loads(line)
        if rec["type"] == "replica":
            out.setdefault(rec["pass"], []).append(rec)
    return out


def test_the_unmodified_store_converges_on_every_replica_after_partitions_and_kills(tmp_path: Path) -> None:
    code, results, run_dir, out = _run(tmp_path, "--workload", "register", "--nemesis", "partition,kill",
                                       "--time-limit", "14", "--nemesis-interval", "3", "--seed", "7")
    assert code == 0, out
    conv = results["checkers"]["convergence"]
    assert conv["valid"] is True, conv
    passes = _passes(run_dir)
    assert set(passes) == {"before", "read-repair", "after"}
    for label, recs in passes.items():
        # Every key was read on each of its three replicas, and every replica answered.
        assert len(recs) == 3 * conv["counts"][f"{label}_keys"], label
        assert not any("error" in r for r in recs), label
        assert all(len(set(r["replicas"])) == 3 for r in recs)
    assert conv["counts"]["after_keys_disagreeing"] == 0 and conv["counts"]["diverged-after-repair"] == 0
    # Each replica of each key holds the newest acknowledged write once hints are delivered.
    header = [json.loads(line) for line in (run_dir / "replicas.jsonl").open() if '"type": "pass"' in line]
    assert header[-1]["pass"] == "after" and header[-1]["hints_drained"] is True
    # The final reads went through more than one coordinator.
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    coordinators = {o["node"] for o in history if o.get("final") and o["type"] == "invoke"}
    assert len(coordinators) >= 3, coordinators


def test_skipping_read_repair_leaves_replicas_the_convergence_check_names(tmp_path: Path) -> None:
    # Set adds are single cells never overwritten: a replica that missed one (a hint not yet
    # delivered: short partitions convict nobody, so hints wait for the 10 s delivery check)
    # keeps missing it until read repair brings it; right after the final reads at ALL every
    # replica must hold what the read returned. Not every campaign ends with such a replica
    # (measured: seeds 1-5 of this campaign caught 4 of 5, r ~ 0.8), so up to six seeds, stopping
    # at the first catch: all six miss with probability 0.2^6, about once in 15,000 runs.
    caught = []
    for seed in ("1", "3", "4", "5", "6", "7"):
        code, results, run_dir, out = _run(tmp_path / seed, "--workload", "set", "--nemesis", "partition,kill",
                                           "--time-limit", "14", "--nemesis-interval", "3", "--seed", seed,
                                           "--fault", "skip_read_repair")
        conv = results["checkers"]["convergence"]
        if "diverged-after-repair" not in anomaly_kinds(results, "convergence"):
            continue
        assert code == 1, out
        a = next(a for a in conv["anomalies"] if a["kind"] == "diverged-after-repair")
        assert a["details"]["problems"] == ["missing"] and "right after the final reads at ALL" in a["explanation"], a
        table = [t for t in conv["details"]["disagreements"] if t["pass"] == "read-repair"]
        assert any(r["missing_count"] for t in table for r in t["replicas"]), table
        caught.append(seed)
        break
    assert caught, "skip_read_repair was caught by the convergence check in none of the seeds"


def test_taking_ranges_over_without_streaming_them_is_caught_on_the_replicas(tmp_path: Path) -> None:
    # One membership change at 7 s: with the switch the replicas that gain ranges take them
    # over empty. Keys last written seconds before the change (30 operations a key) are read
    # at QUORUM from the other replicas, so client-side checkers may see nothing; the replicas
    # themselves lack acknowledged writes that no hint, kill or membership change explains.
    # Seeds 3, 4 and 5 each caught it when measured; try them in turn so the verdict never rests
    # on one run (a miss must still be a clean, valid run).
    for seed in ("3", "4", "5"):
        code, results, run_dir, out = _run(tmp_path / seed, "--nemesis", "membership", "--nemesis-interval", "7",
                                           "--time-limit", "12", "--ops-per-key", "30", "--nodes", "5",
                                           "--seed", seed, "--fault", "skip_pending_streaming")
        if code == 1:
            break
        assert code == 0, out
    assert code == 1, out
    conv = results["checkers"]["convergence"]
    assert conv["valid"] is False, conv["counts"]
    lost = [a for a in conv["anomalies"] if a["kind"] == "replica-lost-write"]
    assert lost, conv["counts"]
    assert conv["counts"]["before_lost_on_replica"] >= 1
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    changes = [o for o in history if o["process"] == "nemesis" and o["type"] == "info"
               and o.get("action") in ("join", "decommission", "removenode")]
    assert changes and all(c["value"]["result"]["bytes"] == 0 for c in changes if "result" in c["value"]), changes
