"""Gaps a second newcomer walk of issue 18 found: options that started a campaign they could not
run (a negative --recovery-time was a traceback after the cluster had started, --ops-per-key 0
and --value-order on a workload that ignores it ran silently) and explanations that printed
Python's None for an absent value where the report and Jepsen say nil."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkers import lww, quorum
from checkers.synth import HistoryBuilder
from harness import cli


@pytest.mark.parametrize("argv, line", [
    (["--recovery-time", "-1"], "harness run: error: --recovery-time must be >= 0 seconds, got -1.0"),
    (["--ops-per-key", "0"], "harness run: error: --ops-per-key must be at least 1, got 0"),
    (["--workload", "set", "--value-order", "random"],
     "harness run: error: --value-order applies to the register workload, not 'set'"),
])
def test_options_a_campaign_cannot_use_are_refused_before_it_starts(
        tmp_path: Path, argv: list[str], line: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s"
    assert cli.main(["run", *argv, "--store", str(store)]) == 254
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert not store.exists()  # nothing was started
    # harness sim takes the same options and refuses them the same way.
    assert cli.main(["sim", *argv, "--store", str(store)]) == 254
    assert capsys.readouterr().err.strip().splitlines() == [line.replace("harness run", "harness sim")]


def test_a_stale_read_of_nothing_says_nil() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k", cl="QUORUM").ok(0, ts=10)
    b.invoke(1, "read", key="k", cl="QUORUM").ok(1, None)
    r = quorum.check(b.ops, {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"})
    [stale] = [a for a in r.anomalies if a.kind == "stale-read"]
    assert "but returned nil (timestamp nil)" in stale.explanation and "None" not in stale.explanation


def test_a_lost_write_whose_final_read_saw_nothing_says_nil() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=10)
    b.invoke(1, "read", key="k").ok(1, None)
    [lost] = [a for a in lww.check(b.ops).anomalies if a.kind == "lost-write"]
    assert lost.explanation.endswith("returned nil"), lost.explanation


def test_run_help_names_every_nemesis_and_what_all_leaves_out(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from nemesis import faults

    monkeypatch.setenv("COLUMNS", "100000")  # one line per option: argparse wraps inside long words
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    [help_text] = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("--nemesis NEMESIS")]
    for name in faults.NEMESES:
        assert any(f"{sep}{name}{end}" in help_text for sep in " ," for end in " ,("), name
    left_out = [n for n in faults.NEMESES if n not in faults.NEMESIS_ALIASES["all"]]
    said = help_text[help_text.index("every one but"):]
    assert all(n in said for n in left_out), (left_out, said)


def test_hosts_up_with_no_hosts_names_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from harness.deploy import hosts

    monkeypatch.setattr(hosts, "missing_requirements", lambda: [])  # as root with the tools: count is checked next
    assert cli.main(["hosts", "up", "--count", "0", "--state-dir", str(tmp_path / "h")]) == 254
    assert capsys.readouterr().err.strip().splitlines() == ["harness hosts up: error: --count must be at least 1, got 0"]
    assert not (tmp_path / "h").exists()


def test_paths_a_run_cannot_use_are_refused_before_it_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each was a traceback and exit 255, the first two only once the cluster had started.
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    store = tmp_path / "s"
    for argv, line in (
        (["--store", str(a_file)], f"--store {a_file}: cannot keep runs there: {a_file} is not a directory"),
        (["--store", str(a_file / "runs")], f"--store {a_file / 'runs'}: cannot keep runs there: {a_file} is not a directory"),
        (["--store", str(store), "--junit-xml", str(a_file / "j.xml")],
         f"--junit-xml {a_file / 'j.xml'}: cannot write it: {a_file} is not a directory"),
        (["--store", str(store), "--junit-xml", str(tmp_path)],
         f"--junit-xml {tmp_path}: cannot write it: it is a directory (give a file name)"),
        (["--store", str(store), "--deploy", "ssh", "--nodes", "h1,h2,h3", "--ssh-private-key", str(tmp_path / "id")],
         f"--ssh-private-key {tmp_path / 'id'}: no such file"),
    ):
        assert cli.main(["run", *argv]) == 254, argv
        assert capsys.readouterr().err.strip().splitlines() == [f"harness run: error: {line}"], argv
        assert not store.exists()


def test_sim_refuses_the_same_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    assert cli.main(["sim", "--seed", "1", "--store", str(a_file)]) == 254
    assert capsys.readouterr().err.strip().splitlines() == [
        f"harness sim: error: --store {a_file}: cannot keep runs there: {a_file} is not a directory"]
    assert cli.main(["sim", "--seeds", "1-2", "--store", str(tmp_path / "s"), "--junit-xml", str(tmp_path)]) == 254
    assert capsys.readouterr().err.strip().splitlines() == [
        f"harness sim: error: --junit-xml {tmp_path}: cannot write it: it is a directory (give a file name)"]
    assert not (tmp_path / "s").exists() and not Path(f"{tmp_path}.tmp").exists()


def test_cluster_commands_on_a_directory_that_is_no_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A file where the cluster directory should be, and a cluster.json that is not one: tracebacks before.
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    assert cli.main(["cluster", "up", "--dir", str(a_file)]) == 254
    assert capsys.readouterr().err.strip().splitlines() == [
        f"harness cluster: error: --dir {a_file}: cannot keep a cluster there: {a_file} is not a directory"]
    for action in ("status", "down"):
        assert cli.main(["cluster", action, "--dir", str(a_file)]) == 254
        assert capsys.readouterr().err.strip().splitlines() == [
            f"harness cluster {action}: no cluster is running here ({a_file / 'cluster.json'} does not exist)"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cluster.json").write_text("[]")
    for action in ("status", "down"):
        assert cli.main(["cluster", action, "--dir", str(tmp_path / "c")]) == 254
        assert capsys.readouterr().err.strip().splitlines() == [
            f"harness cluster {action}: {tmp_path / 'c' / 'cluster.json'} is not a cluster's state (no 'nodes')"]


def test_a_command_cut_short_by_ctrl_c_is_unknown_not_a_harness_failure(monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from harness import report

    def interrupted(run_dir: str) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "report_command", interrupted)
    assert cli.main(["report", "store/latest"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["harness: interrupted; nothing was decided (exit 2)"]
