"""`harness report` and `harness serve` never read a file through a symlink out of the store:
a planted history.jsonl, test.json or node log pointing outside is refused, not rendered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from harness import store
from harness.report.render import ReportError, report_command, write_report
from harness.report.sample import make_run
from harness.serve import serve
from tests.unit.test_serve import get

SECRET = "TOP-SECRET-OUTSIDE-THE-STORE"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "history.jsonl").write_text(json.dumps({"index": 0, "time": 0, "process": 0, "type": "invoke",
                                                 "f": "write", "key": "k", "value": SECRET}) + "\n")
    (d / "node.log").write_text(f"2026-01-01T00:00:00.000 INFO node=n1 x: {SECRET}\n")
    (d / "test.json").write_text(json.dumps({"name": SECRET}))
    return d


def test_report_refuses_a_history_symlinked_out_of_the_run(tmp_path: Path, outside: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "store", "valid")
    (run / store.HISTORY_FILE).unlink()
    os.symlink(outside / "history.jsonl", run / store.HISTORY_FILE)
    with pytest.raises(ReportError, match="symlink out of the run directory"):
        write_report(run)
    assert report_command(run) == 254
    assert "symlink out of the run directory" in capsys.readouterr().err


def test_report_leaves_out_node_logs_symlinked_out_of_the_run(tmp_path: Path, outside: Path) -> None:
    run = make_run(tmp_path / "store", "valid")
    node_dir = next(p for p in (run / "nodes").iterdir() if p.is_dir())
    os.symlink(outside / "node.log", node_dir / "leak.log")
    os.symlink(outside, run / "nodes" / "n9")  # a whole node directory pointing outside
    html = write_report(run).read_text()
    assert SECRET not in html


def test_report_tmp_file_symlink_is_not_written_through(tmp_path: Path, outside: Path) -> None:
    run = make_run(tmp_path / "store", "valid")
    victim = outside / "victim.txt"
    victim.write_text("untouched")
    os.symlink(victim, run / (store.REPORT_FILE + ".tmp"))
    write_report(run)
    assert victim.read_text() == "untouched"


def test_serve_never_renders_or_lists_outside_files(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "store"
    run = make_run(root, "valid")
    (run / store.REPORT_FILE).unlink(missing_ok=True)
    (run / store.HISTORY_FILE).unlink()
    os.symlink(outside / "history.jsonl", run / store.HISTORY_FILE)
    (run / store.TEST_FILE).unlink()
    os.symlink(outside / "test.json", run / store.TEST_FILE)
    rel = run.relative_to(root)

    async def main() -> list[tuple[int, bytes]]:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, root, "127.0.0.1", 0)
            out = []
            for path in ("/", "/api/runs", f"/runs/{rel}/{store.REPORT_FILE}", f"/runs/{rel}/{store.HISTORY_FILE}"):
                status, _, body = await get(port, path)
                out.append((status, body))
            nursery.cancel_scope.cancel()
            return out

    answers = trio.run(main)
    assert all(SECRET.encode() not in body for _, body in answers), answers
    assert answers[2][0] == 500 and b"symlink out of the run directory" in answers[2][1]
    assert answers[3][0] == 404
