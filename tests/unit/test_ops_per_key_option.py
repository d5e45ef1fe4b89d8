"""--ops-per-key is for the workloads that retire keys; the others reject it by name (exit 254)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.run_options import DEFAULT_OPS_PER_KEY, RunOptions


@pytest.mark.parametrize("workload", ["set", "lww-rmw"])
def test_ops_per_key_is_refused_where_no_key_is_retired(workload: str) -> None:
    with pytest.raises(ValueError, match=f"--ops-per-key applies to the register, row, batch workloads, not '{workload}'"):
        RunOptions(workload=workload, ops_per_key=10).validate()
    RunOptions(workload=workload).validate()  # not given: nothing to refuse


@pytest.mark.parametrize("workload", ["register", "row", "batch"])
def test_ops_per_key_reaches_the_key_rotating_workloads(workload: str) -> None:
    RunOptions(workload=workload, ops_per_key=7).validate()
    assert RunOptions(workload=workload, ops_per_key=7)._settings().ops_per_key == 7
    assert RunOptions(workload=workload)._settings().ops_per_key == DEFAULT_OPS_PER_KEY
    with pytest.raises(ValueError, match="--ops-per-key must be at least 1, got 0"):
        RunOptions(workload=workload, ops_per_key=0).validate()


def test_the_cli_names_it_and_exits_254() -> None:
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--workload", "set", "--ops-per-key", "10"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 254
    assert r.stderr.strip().splitlines() == ["harness run: error: --ops-per-key applies to the register, row, batch "
                                             "workloads, not 'set'"]
