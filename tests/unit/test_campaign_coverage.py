"""Campaign coverage from hand-made coverage.py data: remapping, the node/ table, the report, the union."""

from __future__ import annotations

import json
from pathlib import Path

import coverage
import pytest

from harness import campaign_coverage as cc
from harness.cli import main as harness_main
from harness.report.render import write_report
from harness.report.sample import make_run

NODE = cc.local_node_dir()
CONFIG = NODE / "storage" / "config.py"
RING = NODE / "ring.py"
# Where an SSH host's venv keeps the same file: the [paths] remapping must land it on CONFIG.
REMOTE_CONFIG = "/opt/ringlab/n1/venv/lib/python3.11/site-packages/node/storage/config.py"


def statements(path: Path) -> list[int]:
    """The executable lines coverage.py sees in a file of this checkout."""
    cov = coverage.Coverage(data_file=None, config_file=False)
    return sorted(cov.analysis2(str(path))[1])


def write_data(path: Path, lines: dict[str, list[int]]) -> None:
    """One node process's data file, as coverage's parallel mode names it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = coverage.CoverageData(basename=str(path))
    data.add_lines(lines)
    data.write()


def coverage_run(tmp_path: Path, name: str, per_process: list[dict[str, list[int]]]) -> Path:
    """A sample run directory whose coverage/raw/ holds the given node processes' data."""
    run = make_run(tmp_path / name, "valid")
    for i, lines in enumerate(per_process):
        write_data(run / "coverage" / "raw" / f"n{i + 1}" / f".coverage.host.pid{i}.X", lines)
    return run


def row(summary: dict, file: str) -> dict:
    return next(f for f in summary["files"] if f["file"] == file)


def test_finish_remaps_remote_paths_and_unions_the_processes(tmp_path: Path) -> None:
    config = statements(CONFIG)
    ring = statements(RING)
    half = len(config) // 2
    # Process 1 ran on a remote host (site-packages path), process 2 locally; they overlap on one line.
    run = coverage_run(tmp_path, "a", [{REMOTE_CONFIG: config[:half + 1]},
                                       {str(CONFIG): config[half:], str(RING): ring[:3]}])
    summary = cc.finish(run)
    cfg = row(summary, "node/storage/config.py")
    assert cfg["statements"] == len(config) and cfg["covered"] == len(config)
    assert cfg["percent"] == 100.0 and cfg["missing_lines"] == ""
    r = row(summary, "node/ring.py")
    assert r["covered"] == 3 and r["percent"] == round(300 / len(ring), 1)
    assert str(ring[3]) in r["missing_lines"]
    # Every file of node/ is in the table, measured or not; the totals add up over their prefix.
    assert {f["file"] for f in summary["files"]} == {
        p.relative_to(NODE.parent).as_posix() for p in NODE.rglob("*.py") if "__pycache__" not in p.parts}
    assert row(summary, "node/server.py")["covered"] == 0
    storage = summary["totals"]["node/storage/"]
    assert storage["covered"] == len(config)
    assert storage["statements"] == sum(f["statements"] for f in summary["files"] if f["file"].startswith("node/storage/"))
    assert 0 < storage["percent"] < 100
    assert summary["totals"]["node/"]["covered"] == len(config) + 3
    assert summary["data_files"] == 2
    # Written where the report, `harness report` and coverage-union find them.
    assert (run / "coverage" / "index.html").exists()
    assert (run / "coverage" / "coverage.db").exists()
    results = json.loads((run / "results.json").read_text())
    assert results["coverage"]["totals"] == summary["totals"]
    assert results["valid"] is True  # the checkers' results stay as they were
    assert json.loads((run / "coverage" / "summary.json").read_text())["totals"] == summary["totals"]
    assert "node/ " in cc.console_line(summary, run) and "node/storage/ " in cc.console_line(summary, run)


def test_a_journal_left_by_a_kill_mid_save_is_not_a_data_file(tmp_path: Path) -> None:
    run = coverage_run(tmp_path, "a", [{str(RING): statements(RING)[:2]}])
    [data] = cc.data_files(run / cc.COVERAGE_DIR / cc.RAW_DIR)
    for side in cc.SQLITE_SIDE_FILES:
        (data.parent / (data.name + side)).write_bytes(b"")
    assert cc.data_files(run / cc.COVERAGE_DIR / cc.RAW_DIR) == [data]
    summary = cc.finish(run)
    assert summary["data_files"] == 1 and row(summary, "node/ring.py")["covered"] == 2


def test_finish_without_data_is_an_error_naming_the_directory(tmp_path: Path) -> None:
    run = make_run(tmp_path, "valid")
    with pytest.raises(cc.CoverageError, match="no node coverage data"):
        cc.finish(run)


def test_report_shows_the_table_and_runs_without_coverage_still_report(tmp_path: Path) -> None:
    config = statements(CONFIG)
    run = coverage_run(tmp_path, "a", [{str(CONFIG): config[:2]}])
    cc.finish(run)  # with the HTML: the report links to it
    html = write_report(run).read_text()
    assert '<section id="coverage">' in html and 'href="#coverage"' in html
    assert "<td><code>node/storage/config.py</code></td>" in html
    assert '<th>node/storage/</th>' in html and 'href="coverage/index.html"' in html
    # The table also comes from coverage/summary.json when results.json was rewritten without it.
    results = json.loads((run / "results.json").read_text())
    del results["coverage"]
    (run / "results.json").write_text(json.dumps(results))
    assert "<td><code>node/storage/config.py</code></td>" in write_report(run).read_text()
    old = make_run(tmp_path / "old", "valid")
    html = write_report(old).read_text()
    assert "<!--COVERAGE" not in html and 'id="coverage"' not in html


def test_section_escapes_file_names() -> None:
    summary = {"files": [{"file": "node/<x>.py", "statements": 2, "covered": 1, "percent": 50.0,
                          "missing_lines": "3"}],
               "totals": {"node/": {"files": 1, "statements": 2, "covered": 1, "percent": 50.0}}}
    html = cc.section_html(summary)
    assert "node/&lt;x&gt;.py" in html and "<x>" not in html
    assert cc.section_html(None) == ""


def combined_run(tmp_path: Path, name: str, lines: dict[str, list[int]]) -> Path:
    """A run as finish() leaves it, made by hand: its combined data and a summary (totals only)."""
    run = make_run(tmp_path / name, "valid")
    write_data(run / "coverage" / "coverage.db", lines)
    totals = {p: {"files": 1, "statements": 10, "covered": 1, "percent": 10.0} for p in cc.TOTALS}
    (run / "coverage" / "summary.json").write_text(json.dumps({"files": [], "totals": totals}))
    return run


def test_union_of_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = statements(CONFIG)
    a = combined_run(tmp_path, "a", {str(CONFIG): config[:1]})
    b = combined_run(tmp_path, "b", {REMOTE_CONFIG: config[1:3]})
    code = harness_main(["coverage-union", str(a), str(b), "--json", str(tmp_path / "u.json")])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "u.json").read_text())
    assert row(summary, "node/storage/config.py")["covered"] == 3
    assert row(summary, "node/server.py")["covered"] == 0
    assert f"{a}: node/ 10.0%" in out
    assert f"union of 2 run(s): node/ {summary['totals']['node/']['percent']:.1f}%" in out
    plain = make_run(tmp_path / "plain", "valid")
    assert harness_main(["coverage-union", str(a), str(plain)]) == 254
    assert "was it run with --coverage?" in capsys.readouterr().err
