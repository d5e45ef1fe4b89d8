"""harness sim end to end: the unmodified store is valid under client timestamps and the lww-order check.

One deterministic simulated campaign (seed 2: a removenode completes; about 5 s of CPU) with
client-supplied timestamps, a membership change and no read repair: checkers/lww_order.py judges
every read against the exact LWW order of the client's timestamps (ties included), and the
convergence check's before pass every replica, with no read repair to mend a range movement's
gaps first. bench/mutants.py's lww and membership campaigns show both catch planted bugs.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import store
from harness.deploy.sim import run_one
from harness.run import RunOptions


def test_a_correct_store_is_valid_under_client_timestamps_and_a_membership_change(tmp_path: Path) -> None:
    opts = RunOptions(deploy="sim", seed=2, time_limit=8, nemesis="membership", nemesis_interval=1, nodes=4,
                      key_count=100, read_repair="NONE", client_timestamps=True, recovery_time=1,
                      store=str(tmp_path), test_name="t")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True)
    results = json.loads((run_dir / store.RESULTS_FILE).read_text())
    checkers = results["checkers"]
    assert "linearizable" not in checkers  # client timestamps: real time is not the LWW order
    assert results["valid"] is True, {k: v["valid"] for k, v in checkers.items()}
    history = (run_dir / store.HISTORY_FILE).read_text()
    assert any(f'"action":"{a}"' in history for a in ("join", "decommission", "removenode"))
    # Both checks really judged: every replica before the final reads, and reads against tied writes.
    assert checkers["convergence"]["counts"]["before_replicas"] == 300
    assert checkers["lww-order"]["counts"]["ties"] > 10
    assert checkers["lww-order"]["counts"]["reads"] > 100
