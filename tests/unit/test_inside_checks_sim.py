"""End to end in the simulator (deterministic seeds): a full repair after the final reads leaves every
replica agreeing, and a membership campaign's movement snapshots and gossip samples are judged
valid; the same records with one replica's element taken out are not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers import convergence, movement
from harness import store
from harness.deploy.sim import run_one
from harness.history import HistoryFile
from harness.run import RunOptions


def _run(tmp_path: Path, **kw: Any) -> tuple[Path, dict[str, Any]]:
    opts = RunOptions(deploy="sim", workload="set", read_repair="NONE", concurrency="1n", rate=20, recovery_time=1,
                      store=str(tmp_path), test_name="t", **kw)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True)
    return run_dir, store.read_json(run_dir / store.RESULTS_FILE)["checkers"]


def _drop_one(records: list[dict[str, Any]], keep: Any) -> list[dict[str, Any]]:
    """The records with the first element of the first non-empty replica record ``keep`` selects removed."""
    out, done = [], False
    for rec in records:
        if not done and rec.get("type") == "replica" and keep(rec) and rec.get("cells"):
            rec = {**rec, "cells": rec["cells"][1:]}
            done = True
        out.append(rec)
    assert done
    return out


def test_a_full_repair_brings_what_no_hint_carried_and_a_replica_it_missed_is_flagged(tmp_path: Path) -> None:
    # One node killed for 14 s with no hint window: it misses every write after its conviction,
    # and only the final repair brings them.
    run_dir, results = _run(tmp_path, seed=1, nemesis="kill", targets="one", nemesis_interval=14, time_limit=28,
                            key_count=10, max_hint_window=0.0, final_repair=True)
    conv = results["convergence"]
    assert conv["valid"] is True, conv["anomalies"]
    assert conv["counts"]["after_full_repair_judged"] == 1 and conv["counts"]["before_missing"] > 0
    records = convergence.load_snapshots(run_dir / convergence.SNAPSHOT_FILE)
    after = next(r for r in records if r.get("type") == "pass" and r["pass"] == "after")
    assert sum(v["streamed_partitions"] for v in after["full_repair"].values()) > 0
    forged = _drop_one(records, lambda r: r["pass"] == "after")
    ops = list(HistoryFile(run_dir / store.HISTORY_FILE))
    r = convergence.check(ops, {"model": "set", "replica_snapshots": forged, "max_hint_window": 0.0})
    assert r.valid is False and r.counts["diverged-after-repair"] >= 1


def test_movement_snapshots_and_gossip_samples_of_a_membership_campaign(tmp_path: Path) -> None:
    run_dir, results = _run(tmp_path, seed=5, nemesis="membership", nemesis_interval=3, time_limit=12, key_count=40)
    for name in ("movement", "gossip"):
        assert results[name]["valid"] is True, results[name]["anomalies"]
    assert results["movement"]["counts"]["judged_writes"] > 0
    assert results["gossip"]["counts"]["compared"] > 0 and results["gossip"]["counts"]["final_views"] >= 3
    lines = [json.loads(x) for x in (run_dir / movement.MOVEMENTS_FILE).read_text().splitlines()]
    # The last snapshot as if the ring had given every key to two replicas that hold nothing yet.
    last = max(x["movement"] for x in lines)
    seen: dict[Any, int] = {}
    for x in lines:
        if x.get("type") == "replica" and x["movement"] == last:
            seen[x["key"]] = seen.get(x["key"], 0) + 1
            if seen[x["key"]] > 1:
                x["cells"] = []
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / movement.MOVEMENTS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))
    ops = list(HistoryFile(run_dir / store.HISTORY_FILE))
    r = movement.check(ops, {"model": "set", "replication_factor": 3, **movement.params_for_run(forged)})
    assert r.valid is False and r.counts["moved-write-unheld"] >= 1
