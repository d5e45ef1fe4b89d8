"""Each validation fault switch is caught by a sim sweep whose verdict is not luck.

A simulation is deterministic per seed, so a sweep over fixed seeds gives the same verdict on
every run of the same code. The number of seeds n is still chosen from the per-seed detection
rate r measured by bench/sim.py (1-(1-r)^n >= 0.999), so that a change to the store or the
harness that moves which seeds catch a switch does not turn the test red by bad draw. The sweep
stops at the first invalid seed, so it costs about 1/r campaigns (2 CPU s each).

skip_pending_ranges and skip_pending_streaming need membership campaigns (about 7 CPU s a seed
in sim) whose rates are not measured yet; tests/e2e keeps their real campaigns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.deploy.sim import run_one
from harness.run import RunOptions

# Faults change every 3 virtual seconds, so a 12 s campaign has two rounds of each.
BASE: dict[str, Any] = {"deploy": "sim", "time_limit": 12.0, "nemesis_interval": 3.0, "recovery_time": 2.0,
                        "test_name": "sweep"}


@pytest.mark.parametrize(("switch", "campaign", "seeds"), [
    # r = 0.85 over seeds 1-20 (latency: a write acknowledged after one replica reaches the other
    # two up to 150 ms later, and a QUORUM read through another coordinator misses it): n = 4.
    ("ack_quorum_after_one", {"nemesis": "latency"}, 4),
    # r = 1.0 over seeds 1-20 (a majority killed, ANY writes acknowledged on hints alone): n = 3
    # leaves room for a rate well below the measured one.
    ("drop_hints", {"workload": "set", "nemesis": "kill", "targets": "majority", "key_count": 50,
                    "write_cl": "ANY", "read_cl": "ALL"}, 3),
    # r = 0.25 over seeds 1-20 (partitions and kills leave replicas behind; reads that see the
    # mismatch answer without repairing, so a later QUORUM read can go back in time): n = 25.
    ("skip_read_repair", {"nemesis": "partition,kill"}, 25),
])
def test_validation_switch_is_caught_by_a_sim_sweep(tmp_path: Path, switch: str, campaign: dict[str, Any],
                                                     seeds: int) -> None:
    verdicts = []
    for seed in range(1, seeds + 1):
        run_dir = tmp_path / f"seed-{seed}"
        run_dir.mkdir()
        opts = RunOptions(**{**BASE, **campaign}, seed=seed, validation_faults=[switch], store=str(tmp_path))
        result = run_one(opts, run_dir, quiet=True)
        verdicts.append((seed, result.outcome.valid))
        if result.outcome.valid is False:
            anomalies = [a for r in result.outcome.results.results.values() for a in (r.anomalies or [])]
            assert anomalies, f"{switch}: invalid without an anomaly"
            return
        assert result.outcome.valid is True, f"{switch} seed {seed}: {result.outcome.valid}"
    pytest.fail(f"{switch} not caught by seeds 1-{seeds}: {verdicts}")


def test_the_unmodified_store_is_valid_under_the_same_faults(tmp_path: Path) -> None:
    # The same fault schedule without a switch: what the sweeps catch is the switch, not the sim.
    for seed in (1, 4):
        run_dir = tmp_path / f"seed-{seed}"
        run_dir.mkdir()
        opts = RunOptions(**BASE, nemesis="partition,kill", seed=seed, store=str(tmp_path))
        assert run_one(opts, run_dir, quiet=True).outcome.valid is True
