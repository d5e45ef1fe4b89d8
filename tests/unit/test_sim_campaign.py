"""harness sim end to end: the real node code in one process is deterministic per seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import store
from harness.cli import main
from harness.deploy.sim import run_one
from harness.run import RunOptions
from harness.simcli import parse_seeds, replay_command, SimSettings


def _opts(seed: int, tmp: Path) -> RunOptions:
    # Short but eventful: every fault of the default sim nemeses fires at least once.
    return RunOptions(deploy="sim", seed=seed, time_limit=6, nemesis="partition,kill,pause", nemesis_interval=1.5,
                      concurrency="1n", rate=100, recovery_time=1, store=str(tmp), test_name="t")


def _run(seed: int, tmp: Path, name: str):  # type: ignore[no-untyped-def]
    run_dir = tmp / name
    run_dir.mkdir()
    return run_one(_opts(seed, tmp), run_dir, quiet=True), run_dir


def test_same_seed_gives_identical_history_and_trace_other_seed_differs(tmp_path: Path) -> None:
    a, dir_a = _run(11, tmp_path, "a")
    b, dir_b = _run(11, tmp_path, "b")
    c, _ = _run(12, tmp_path, "c")
    hist_a = (dir_a / store.HISTORY_FILE).read_bytes()
    assert hist_a == (dir_b / store.HISTORY_FILE).read_bytes()
    assert a.trace_hash == b.trace_hash and a.trace_events == b.trace_events
    assert c.trace_hash != a.trace_hash and c.history_hash != a.history_hash
    # It was a real campaign: operations completed, faults were applied, nodes were killed.
    assert a.outcome.completed > 100
    assert b'"f":"start-kill"' in hist_a and b'"f":"start-partition"' in hist_a
    test = store.read_json(dir_a / store.TEST_FILE)
    assert test["deploy"] == "sim" and test["sim"]["trace_hash"] == a.trace_hash
    assert (dir_a / "nodes" / "n1" / "node.log").exists()


def test_a_storage_heavy_seed_is_deterministic_wherever_its_files_live(tmp_path: Path) -> None:
    # Flushes and compactions every few KB: the passes' storage answers list SSTables, and each run
    # keeps its nodes' files in another temporary directory, which no answer may carry.
    opts = RunOptions(deploy="sim", seed=5, time_limit=6, nemesis="flush-compact,kill", nemesis_interval=1.5,
                      concurrency="1n", rate=100, recovery_time=1, store=str(tmp_path), test_name="t",
                      memtable_flush_kb=1)
    results = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        results.append(run_one(opts, run_dir, quiet=True))
    a, b = results
    assert a.trace_hash == b.trace_hash and a.history_hash == b.history_hash
    health = [json.loads(line) for line in (tmp_path / "a" / "replicas.jsonl").read_text().splitlines()]
    listed = [row for rec in health for node in (rec.get("storage_health") or {}).values() if isinstance(node, dict)
              for rows in (node.get("sstables") or {}).values() for row in rows]
    assert listed, "no SSTable was listed: the run did not reach the storage answers"


def test_parse_seeds() -> None:
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    for bad in ("x", "5-2", ""):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "x"], "--seeds"),
    (["--nemesis", "crash"], "not simulated"),
    (["--tear"], "--tear needs --crash power"),
    (["--seed", "1", "--seeds", "1-2"], "not both"),
    (["--commitlog-sync", "group"], "invalid choice"),
])
def test_bad_arguments_exit_254(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["sim", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code  # type: ignore[assignment]
    assert code == 254
    assert message in capsys.readouterr().err


def test_replay_command_names_every_changed_option() -> None:
    opts = RunOptions(deploy="sim", nemesis="kill", time_limit=20, validation_faults=["drop_hints"])
    cmd = replay_command(opts, SimSettings(crash="power"), 42)
    assert cmd == "harness sim --seed 42 --nemesis kill --time-limit 20 --fault drop_hints --crash power"
    # A default option is left out; one that differs from the default is named.
    opts.memtable_flush_kb = 0
    assert replay_command(opts, SimSettings(), 42) == "harness sim --seed 42 --nemesis kill --time-limit 20 --memtable-flush-kb 0 --fault drop_hints"


def test_a_sweep_keeps_failing_seeds_prints_their_replay_and_exits_1(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # drop_hints under majority kills: caught by every one of seeds 1-10 (bench/sim.py).
    argv = ["sim", "--seeds", "1", "--jobs", "1", "--fault", "drop_hints", "--workload", "set", "--nemesis", "kill",
            "--targets", "majority", "--key-count", "50", "--write-cl", "ANY", "--read-cl", "ALL",
            "--time-limit", "12", "--nemesis-interval", "3", "--store", str(tmp_path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "detection rate" in out and "INVALID" in out
    assert "replay: harness sim --seed " in out and "--fault drop_hints" in out
    [sweep_dir] = (tmp_path / "sim-set-kill").glob("sweep-*")
    summary = store.read_json(sweep_dir / "sweep.json")
    kept = [r for r in summary["rows"] if r["valid"] is False]
    assert kept and all((Path(r["run_dir"]) / "report.html").exists() for r in kept)


def test_membership_in_sim_decommissions_and_joins_a_node_and_stays_valid(tmp_path: Path) -> None:
    # Seed 7 draws a decommission, then a join of a fresh simulated node n6 that bootstraps.
    run_dir = tmp_path / "m"
    run_dir.mkdir()
    opts = RunOptions(deploy="sim", seed=7, nemesis="membership", nemesis_interval=2, time_limit=16, recovery_time=1,
                      concurrency="1n", rate=100, store=str(tmp_path), test_name="m")
    result = run_one(opts, run_dir, quiet=True)
    history = (run_dir / store.HISTORY_FILE).read_text()
    assert '"action":"decommission"' in history and '"action":"join"' in history
    assert '"node":"n6"' in history
    assert "bootstrap" in (run_dir / "nodes" / "n6" / "node.log").read_text().lower()
    assert result.outcome.valid is True
