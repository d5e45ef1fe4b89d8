"""`harness check`: verdict exit codes 0/1/2, bad arguments 254, run directories, EDN input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from checkers.synth import HistoryBuilder, generate
from harness.cli import main
from harness.history import write_edn, write_jsonl


def _stale(path: Path) -> Path:
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0, ts=1).invoke(0, "write", 2).ok(0, ts=2).invoke(1, "read").ok(1, 1, ts=1)
    write_jsonl(b.ops, path)
    return path


def test_valid_history_exits_0_and_prints_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "history.jsonl"
    write_jsonl(generate("register", n_ops=300, clients=5, seed=2), path)
    assert main(["check", "--history", str(path), "--model", "register"]) == 0
    out = capsys.readouterr().out
    assert "linearizable" in out and "Overall: valid" in out


def test_invalid_history_exits_1_and_explains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _stale(tmp_path / "h.jsonl")
    assert main(["check", "--history", str(path), "--model", "register", "--replication-factor", "3",
                 "--read-cl", "QUORUM", "--write-cl", "QUORUM"]) == 1
    out = capsys.readouterr().out
    assert "Overall: INVALID" in out and "cannot be linearized" in out and "stale-read" in out


def test_undecided_search_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jsonl"
    b = HistoryBuilder()  # 20 overlapping appends and a read no order explains: ~20! configurations
    for p in range(20):
        b.invoke(p, "append", p)
    b.invoke(20, "get").ok(20, [1, 0, 999])
    for p in range(20):
        b.ok(p)
    write_jsonl(b.ops, path)
    code = main(["check", "--history", str(path), "--model", "kv", "--checkers", "linearizable",
                 "--time-limit", "0.2"])
    assert code == 2
    assert "time limit" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["check"], "RUN_DIR or --history"),
        (["check", "--history", "/nonexistent/h.jsonl"], "--history"),
        (["check", "--history", "HISTORY", "--model", "graph"], "--model"),
        (["check", "--history", "HISTORY", "--replication-factor", "zero"], "--replication-factor"),
        (["check", "--history", "HISTORY", "--read-cl", "MOST"], "--read-cl"),
        (["check", "--history", "HISTORY", "--time-limit", "-1"], "--time-limit"),
        (["check", "--history", "HISTORY", "--checkers", "linearizable,vibes"], "vibes"),
        (["check", "--bogus"], "--bogus"),
        ([], "COMMAND"),
    ],
)
def test_bad_arguments_exit_254_naming_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     argv: list[str], needle: str) -> None:
    path = _stale(tmp_path / "h.jsonl")
    argv = [str(path) if a == "HISTORY" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        sys.exit(main(argv))
    assert e.value.code == 254
    assert needle in capsys.readouterr().err


def test_malformed_history_exits_254_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"index": 0, "time": 1, "process": 0, "type": "invoke", "f": "read"}\nnot json\n{}\n')
    assert main(["check", "--history", str(path)]) == 254
    assert "h.jsonl:2" in capsys.readouterr().err


def test_run_dir_reads_test_json_and_writes_results(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _stale(run / "history.jsonl")
    (run / "test.json").write_text(json.dumps({"name": "t", "workload": "register", "replication_factor": 3,
                                               "read_cl": "ALL", "write_cl": "ONE", "nodes": ["n1", "n2", "n3"]}))
    # Through the installed console script, as a user runs it.
    harness = Path(sys.executable).parent / "harness"
    proc = subprocess.run([str(harness), "check", str(run)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is False
    assert results["summary"] == {"linearizable": False, "lww": False, "quorum": False, "perf": True}
    assert results["params"]["read_cl"] == "ALL"


def test_edn_history_and_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "history.edn"
    write_edn(generate("set", n_ops=200, clients=4, seed=3), path)
    assert main(["check", "--history", str(path), "--model", "set", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"] == {"linearizable": True, "set": True, "perf": True}


def test_a_history_file_given_as_the_positional_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A lone history file is read as --history: the stale read is found, no results.json written.
    path = _stale(tmp_path / "h.jsonl")
    assert main(["check", str(path), "--model", "register", "--replication-factor", "3",
                 "--read-cl", "QUORUM", "--write-cl", "QUORUM"]) == 1
    assert "stale-read" in capsys.readouterr().out
    assert not (tmp_path / "results.json").exists()
    # A run's own history.jsonl stands for its run directory: test.json's parameters apply.
    run = tmp_path / "run"
    run.mkdir()
    _stale(run / "history.jsonl")
    (run / "test.json").write_text(json.dumps({"name": "t", "workload": "register", "replication_factor": 3,
                                               "read_cl": "ALL", "write_cl": "ONE", "nodes": ["n1", "n2", "n3"]}))
    assert main(["check", str(run / "history.jsonl")]) == 1
    assert json.loads((run / "results.json").read_text())["params"]["read_cl"] == "ALL"


def test_a_path_that_does_not_exist_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "h.jsonl"
    with pytest.raises(SystemExit) as e:
        sys.exit(main(["check", str(missing)]))
    assert e.value.code == 254
    assert f"{str(missing)!r} does not exist" in capsys.readouterr().err
