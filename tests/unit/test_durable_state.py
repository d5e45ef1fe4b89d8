"""A node's small state files (tokens, peers, schema, bootstrap) survive a power loss.

Found by the simulator's power-loss crash: tokens.json, peers.json and the storage order marker
were written without fsync, so a node restarted after a power loss could come back with new
tokens, and batch-mode QUORUM reads went stale (20 stale reads for seed 7 before the fix)."""

from __future__ import annotations

from pathlib import Path

from harness.deploy.sim import run_one
from harness.run import RunOptions
from node.durable import write_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    write_atomic(path, "[1]")
    write_atomic(path, b"[2]")
    assert path.read_text() == "[2]"
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.json"]


def test_every_node_losing_power_at_once_in_batch_mode_stays_valid(tmp_path: Path) -> None:
    run_dir = tmp_path / "power"
    run_dir.mkdir()
    opts = RunOptions(deploy="sim", seed=7, nemesis="kill", targets="all", commitlog_sync="batch", time_limit=20,
                      nemesis_interval=5, store=str(tmp_path), test_name="power")
    result = run_one(opts, run_dir, crash="power", quiet=True)
    history = (run_dir / "history.jsonl").read_text()
    assert '"action":"kill"' in history
    assert result.outcome.valid is True, (run_dir / "results.json").read_text()[:3000]
