"""Each validation fault switch is caught by a sim sweep whose verdict is not luck.

A simulation is deterministic per seed, so a sweep over fixed seeds gives the same verdict on
every run of the same code (the seeds run in `harness sim`'s worker processes, two at a time,
with the fixed hash seed that makes them replayable). The number of seeds n is still chosen from the per-seed detection
rate r measured over a sweep (docs/sim.md, *Detection rates*; 1-(1-r)^n >= 0.999), so that a
change to the store or the harness that moves which seeds catch a switch does not turn the test
red by bad draw. The sweep stops at the first invalid seed, so it costs about 1/r campaigns.

These replace the real-process detection campaigns tests/e2e once ran (a 12 s campaign per
seed, and a single 45 s membership campaign whose catch was one seed's luck).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.run import RunOptions
from harness.simcli import SimSettings, _job, _payload, _pool

# Seeds run at once: this machine's cores (CI has two).
JOBS = 2

# Faults change every 3 virtual seconds, so a 12 s campaign has two rounds of each.
BASE: dict[str, Any] = {"deploy": "sim", "time_limit": 12.0, "nemesis_interval": 3.0, "recovery_time": 2.0,
                        "test_name": "sweep"}
# A membership change 2 virtual seconds in, another 2 s after it ends when the 9 s allow it (a
# step takes 5-12 s: a join, a decommission, a removenode that waits for its node's conviction),
# at 50 operations a second, with short-lived keys so many were last written before a change
# and read after. Short, cheap seeds (0.75 CPU s): docs/sim.md, *Detection rates*.
MEMBERSHIP: dict[str, Any] = {"nemesis": "membership", "time_limit": 9.0, "nemesis_interval": 2.0,
                              "ops_per_key": 30, "rate": 50}


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    """Worker processes shared by the module's sweeps (each imports the harness once)."""
    with _pool(JOBS) as p:
        yield p


def _runs(pool: Any, tmp_path: Path, seeds: list[int], campaign: dict[str, Any],
          switches: list[str]) -> list[dict[str, Any]]:
    payloads = []
    for seed in seeds:
        opts = RunOptions(**{**BASE, **campaign}, seed=seed, validation_faults=switches, store=str(tmp_path))
        payloads.append(_payload(opts, SimSettings(), tmp_path / f"seed-{seed}", quiet=True, lazy_report=True))
    return pool.map(_job, payloads)


def _sweep(pool: Any, tmp_path: Path, switch: str, campaign: dict[str, Any], seeds: int) -> Path:
    """Seeds 1..n, JOBS at a time, until one is invalid: its run directory; fails if none is."""
    verdicts = []
    for start in range(1, seeds + 1, JOBS):
        for row in _runs(pool, tmp_path, list(range(start, min(start + JOBS, seeds + 1))), campaign, [switch]):
            verdicts.append((row["seed"], row["valid"]))
            if row["valid"] is False:
                assert row["anomalies"] > 0, f"{switch}: invalid without an anomaly: {row}"
                return Path(row["run_dir"])
            assert row["valid"] is True, f"{switch} seed {row['seed']}: {row.get('error') or row['valid']}"
    pytest.fail(f"{switch} not caught by seeds 1-{seeds}: {verdicts}")


@pytest.mark.parametrize(("switch", "campaign", "seeds"), [
    # r = 1.0 over seeds 1-200 since the acks checker (2026-12-03; 0.765 by the read checkers
    # alone: a write acknowledged after one replica reaches the other two up to 150 ms later,
    # and a QUORUM read through another coordinator misses it): n = 1; 8 holds down to r = 0.58.
    ("ack_quorum_after_one", {"nemesis": "latency"}, 8),
    # r = 1.0 over seeds 1-200, 8 virtual s with kills every 2 (a majority killed, ANY writes
    # acknowledged on hints alone): n = 3 leaves room for a rate well below the measured one.
    ("drop_hints", {"workload": "set", "nemesis": "kill", "targets": "majority", "key_count": 50,
                    "write_cl": "ANY", "read_cl": "ALL", "time_limit": 8.0, "nemesis_interval": 2.0}, 3),
    # r = 0.595 over seeds 1-200 (partitions and kills leave replicas behind; reads that see the
    # mismatch answer without repairing, so a later QUORUM read can go back in time): n = 8;
    # 25 is enough for r down to 0.25, the rate an earlier sim measured.
    ("skip_read_repair", {"nemesis": "partition,kill"}, 25),
])
def test_validation_switch_is_caught_by_a_sim_sweep(pool: Any, tmp_path: Path, switch: str,
                                                     campaign: dict[str, Any], seeds: int) -> None:
    _sweep(pool, tmp_path, switch, campaign, seeds)


def _membership_changes(run_dir: Path) -> list[dict[str, Any]]:
    history = [json.loads(line) for line in (run_dir / "history.jsonl").open()]
    return [o for o in history if o["process"] == "nemesis" and o["type"] == "info"
            and o.get("action") in ("join", "decommission", "removenode")]


@pytest.mark.parametrize(("switch", "seeds"), [
    # r = 0.815 over seeds 1-200 (163; the changes stream nothing; the ranges' new replicas answer
    # QUORUM reads empty): n = 5; 6 holds down to r = 0.69.
    ("skip_pending_streaming", 6),
    # r = 0.335 over seeds 1-200 (67; docs/sim.md): the replicas gaining ranges lack writes
    # acknowledged while the change was under way, which only the convergence checker's
    # per-replica reads see (two of three replicas hold each write, so QUORUM reads stay right):
    # n = 17; 30 holds down to r = 0.21.
    ("skip_pending_ranges", 30),
])
def test_membership_switch_is_caught_by_a_sim_sweep(pool: Any, tmp_path: Path, switch: str, seeds: int) -> None:
    run_dir = _sweep(pool, tmp_path, switch, MEMBERSHIP, seeds)
    results = json.loads((run_dir / "results.json").read_text())
    kinds = {a["kind"] for c in results["checkers"].values() for a in c.get("anomalies", [])}
    changes = [c for c in _membership_changes(run_dir) if "result" in c["value"]]
    assert changes, "no membership change completed"
    if switch == "skip_pending_streaming":
        # The changes streamed nothing, so the ranges' new replicas lack acknowledged writes: the
        # per-replica reads see it, and reads at QUORUM that meet two of them miss the writes.
        assert all(c["value"]["result"]["bytes"] == 0 for c in changes), changes
        assert kinds & {"replica-lost-write", "moved-write-unheld", "stale-read", "not-linearizable",
                        "non-monotonic-read"}, kinds
    else:
        assert "replica-lost-write" in kinds, kinds


def test_the_unmodified_store_is_valid_under_the_same_faults(pool: Any, tmp_path: Path) -> None:
    # The same fault schedules without a switch: what the sweeps catch is the switch, not the sim.
    for row in _runs(pool, tmp_path / "pk", [1, 4], {"nemesis": "partition,kill"}, []):
        assert row["valid"] is True, row
    [row] = _runs(pool, tmp_path / "m", [1], MEMBERSHIP, [])
    assert row["valid"] is True, row
    changes = [c for c in _membership_changes(Path(row["run_dir"])) if "result" in c["value"]]
    # Streams really moved data (skip_pending_streaming is what turns them off).
    assert changes and sum(c["value"]["result"]["bytes"] for c in changes) > 0, changes
