"""What makes a simulated seed cheaper must not change what the seed does (docs/sim.md, *Speed*)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from harness.deploy.sim import run_one
from harness.history import HistoryWriter
from harness.run import RunOptions
from harness.simcli import GC_THRESHOLD, _quiet_gc
from sim import scratch


def test_an_unflushed_history_writer_has_every_line_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path, flush=False) as w:
        for i in range(3):
            w.write({"index": i, "type": "invoke"})
    assert [json.loads(line)["index"] for line in path.read_text().splitlines()] == [0, 1, 2]


def test_the_scratch_directory_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(scratch.ENV, str(tmp_path))
    made = scratch.make_scratch()
    assert made is not None and made.parent == tmp_path
    (made / "n1" / "data").mkdir(parents=True)
    (made / "n1" / "data" / "f").write_text("x")
    scratch.move_into(made, tmp_path / "run" / "nodes")
    assert (tmp_path / "run" / "nodes" / "n1" / "data" / "f").read_text() == "x"
    scratch.remove(made)
    assert not made.exists()
    monkeypatch.setenv(scratch.ENV, "")
    assert scratch.make_scratch() is None


def test_where_node_files_live_changes_nothing_in_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same seed with its node files in a scratch directory, then in the run directory.
    opts = RunOptions(deploy="sim", seed=5, time_limit=3, nemesis="kill", nemesis_interval=1, concurrency="1n",
                      rate=100, recovery_time=1, store=str(tmp_path), test_name="t")
    base = tmp_path / "scratch"
    base.mkdir()
    runs = []
    for name, where in (("a", str(base)), ("b", "")):
        monkeypatch.setenv(scratch.ENV, where)
        run_dir = tmp_path / name
        run_dir.mkdir()
        runs.append((run_one(opts, run_dir, quiet=True, report=False), run_dir))
    (a, dir_a), (b, dir_b) = runs
    assert a.history_hash == b.history_hash and a.trace_hash == b.trace_hash
    assert b'"f":"start-kill"' in (dir_a / "history.jsonl").read_bytes()
    # The scratch is gone and the data is where a run directory keeps it.
    assert list(base.iterdir()) == []
    assert (dir_a / "nodes" / "n1" / "data" / "tokens.json").exists()
    assert (dir_a / "nodes" / "n1" / "node.log").exists()


def test_a_worker_starts_each_seed_from_a_quiet_collector() -> None:
    before = gc.get_threshold()
    try:
        _quiet_gc()
        assert gc.get_threshold()[0] == GC_THRESHOLD
        assert gc.get_count()[0] < 100  # just collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_scratch_without_room_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(scratch.ENV, str(tmp_path))
    monkeypatch.setattr(scratch, "_free_bytes", lambda path: scratch.MIN_FREE_BYTES - 1)
    assert scratch.scratch_base() is None
