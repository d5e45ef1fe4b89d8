"""End to end in the simulator: a campaign's sampled failure-detector views are judged valid, and
the same samples with the convictions taken out are not (checkers/liveness.py)."""

from __future__ import annotations

import json
from pathlib import Path

from checkers import liveness
from harness import store
from harness.deploy.sim import run_one
from harness.history import HistoryFile
from harness.liveness_probe import LIVENESS_FILE
from harness.run import RunOptions


def test_a_long_kill_is_convicted_and_cleared_and_a_forged_view_is_not(tmp_path: Path) -> None:
    # One node killed for 27 virtual s (the conviction bound is about 24 s), then restarted;
    # few operations: what is judged is the nodes' views of each other.
    opts = RunOptions(deploy="sim", seed=2, time_limit=56, nemesis="kill", targets="one", nemesis_interval=27,
                      concurrency="1n", rate=20, recovery_time=1, store=str(tmp_path), test_name="t")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True)
    results = store.read_json(run_dir / store.RESULTS_FILE)["checkers"]["liveness"]
    assert results["valid"] is True, results["anomalies"]
    # The outage outlasted the bound, so the live nodes' views of the dead one were judged, and
    # after the restart every view of it was judged UP again.
    assert results["counts"]["judged_down"] > 0 and results["counts"]["judged_up"] > 0
    # The same samples as a detector that never convicts would give them: every DOWN an UP.
    forged = []
    for line in (run_dir / LIVENESS_FILE).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "view":
            rec["view"] = {p: ["U", status] for p, (_state, status) in rec["view"].items()}
        forged.append(rec)
    r = liveness.check(list(HistoryFile(run_dir / store.HISTORY_FILE)), {"liveness_samples": forged})
    assert r.valid is False and r.counts["never-convicted"] > 0
