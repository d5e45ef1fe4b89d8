"""harness sim end to end: the unmodified store is valid under the movement and lww-order checks.

One deterministic simulated campaign (seed 2: a removenode completes, then the ring settles; about 5 s of CPU)
with client-supplied timestamps and no read repair: checkers/movement.py judges every replica of
the settled ring strictly, and checkers/lww_order.py judges every read against the exact LWW
order of the client's timestamps (ties included). bench/mutants.py shows both catch planted bugs.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import store
from harness.deploy.sim import run_one
from harness.run import RunOptions


def test_a_correct_store_is_valid_under_the_strict_movement_and_lww_order_checks(tmp_path: Path) -> None:
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
    # Both checks really judged: the settled ring's replicas, and reads against tied writes.
    assert checkers["movement"]["counts"]["judged"] == 1
    assert checkers["movement"]["counts"]["replicas"] == 300
    assert checkers["lww-order"]["counts"]["ties"] > 10
    assert checkers["lww-order"]["counts"]["reads"] > 100
