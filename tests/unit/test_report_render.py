"""report.html generation from stored files: escaping, data columns, nemesis windows, node logs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.history import NEMESIS, Op, write_jsonl
from harness.report import render
from harness.report.render import collect, report_command, script_json, write_report
from harness.report.sample import HOSTILE_VALUE, make_run


def data_block(html: str) -> dict:
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def test_script_json_cannot_close_the_script_element() -> None:
    s = script_json({"v": "</script><script>alert(1)</script><!-- & \u2028"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s)["v"] == "</script><script>alert(1)</script><!-- & \u2028"


def test_report_of_a_sample_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, "valid")
    out = write_report(run)
    assert out == run / "report.html"
    html = out.read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no external fetches
    assert html.count("<script") == 2
    data = data_block(html)
    ops = data["ops"]
    assert ops["n"] == 600
    assert all(len(ops[c]) == 600 for c in ("inv", "cmp", "proc", "type", "f", "key", "val", "lane", "ii", "ci"))
    assert HOSTILE_VALUE in ops["val"]
    assert data["valid"] is True
    assert {c["name"] for c in data["checkers"]} == {"linearizable", "quorum"}
    assert sum(c["ok"] + c["fail"] + c["info"] for c in data["counts"].values()) == 600
    assert [w["kind"] for w in data["nemesis"]] == ["partition"] * 3
    assert all(w["targets"].startswith("cut {") for w in data["nemesis"])
    # logs: node.log first, stdout.log adds only what node.log lacks, the binary CommitLog is skipped
    n1 = data["logs"]["n1"]
    assert n1["files"] == ["data/node.log", "stdout.log"]
    assert sum(1 for s in n1["src"] if s == 1) == 1
    assert all("CommitLog" not in f for f in n1["files"])
    assert all(t is not None for t in n1["t"])


def test_rewrite_is_deterministic_apart_from_generation_time(tmp_path: Path) -> None:
    run = make_run(tmp_path, "clock")
    a = data_block(write_report(run).read_text())
    b = data_block(write_report(run).read_text())
    a["meta"].pop("generated"), b["meta"].pop("generated")
    assert a == b
    assert len(a["clock"]) == 8 and set(a["clock"][0]["offsets"]) == {"n1", "n2", "n3", "n4", "n5"}
    lww = next(c for c in a["checkers"] if c["name"] == "lww")
    assert lww["valid"] is False and all(len(x["rows"]) == 2 for x in lww["anomalies"])


def test_linearizability_anomaly_rows_point_at_the_blocked_op(tmp_path: Path) -> None:
    run = make_run(tmp_path, "linearizability")
    data = collect(run)
    lin = next(c for c in data["checkers"] if c["name"] == "linearizable")
    (a,) = lin["anomalies"]
    blocked = a["details"]["op"]["invoke_index"]
    assert any(data["ops"]["ii"][r] == blocked for r in a["rows"])
    assert a["details"]["prefix"]


def test_minimal_run_without_results_or_logs(tmp_path: Path) -> None:
    """Only a history: the report still renders, verdict unknown, open ops and nemesis windows handled."""
    ops = [
        Op(0, 1_000_000, 0, "invoke", "write", "k", "<b>x</b>"),
        Op(1, 2_000_000, NEMESIS, "invoke", "start-kill"),
        Op(2, 2_500_000, NEMESIS, "info", "start-kill", value={"spec": "one", "nodes": ["n3"]}, extra={"action": "kill"}),
        Op(3, 3_000_000, 0, "info", "write", "k", "<b>x</b>", error="WriteTimeout"),
        Op(4, 4_000_000, 1, "invoke", "read", "k"),
        Op(5, 5_000_000, NEMESIS, "info", "heal", value={"healed": ["kill"]}),
    ]
    write_jsonl(ops, tmp_path / "history.jsonl")
    data = collect(tmp_path)
    assert data["valid"] == "unknown" and data["checkers"] == []
    assert data["ops"]["cmp"] == [3000, -1]          # the read never completed
    assert data["ops"]["type"] == [2, 2]
    (w,) = data["nemesis"]
    assert w["kind"] == "kill" and w["targets"] == "one: n3" and w["end"] == 5000 and "heal" in w["actions"]
    write_jsonl(ops[:-1], tmp_path / "history.jsonl")
    (w,) = collect(tmp_path)["nemesis"]
    assert w.get("open") is True and w["end"] == 4000  # never stopped: runs to the last operation
    assert data["logs"] == {}
    assert write_report(tmp_path).exists()


def test_many_processes_become_worker_lanes() -> None:
    table = render.OpTable(concurrency=4)
    idx = 0
    for p in range(render.MAX_PROCESS_LANES + 10):
        table.add(Op(idx, idx * 10, p, "invoke", "read", 1), Op(idx + 1, idx * 10 + 5, p, "info", "read", 1))
        idx += 2
    lane, labels = table.lanes()
    assert len(labels) == 4 and lane[:8] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_report_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_command(tmp_path / "missing") == 254
    assert "not a run directory" in capsys.readouterr().err
    assert report_command(tmp_path) == 254
    assert "no history.jsonl" in capsys.readouterr().err
    (tmp_path / "history.jsonl").write_text('{"index": 0, "time": "soon"}\n')
    assert report_command(tmp_path) == 254
    assert "history.jsonl:1" in capsys.readouterr().err
    (tmp_path / "history.jsonl").write_text("")
    (tmp_path / "results.json").write_text("{not json")
    assert report_command(tmp_path) == 254
    assert "results.json: not valid JSON" in capsys.readouterr().err
    (tmp_path / "results.json").unlink()
    assert report_command(tmp_path) == 0
    assert (tmp_path / "report.html").exists()


def test_node_log_tail_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "NODE_LOG_TAIL_BYTES", 10_000)
    d = tmp_path / "nodes" / "n1"
    d.mkdir(parents=True)
    (d / "node.log").write_text("".join(f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000 INFO line {i}\n" for i in range(5000)))
    logs = render.collect_logs(tmp_path, None)
    n1 = logs["n1"]
    assert n1["truncated"] is True
    assert sum(len(s) + 1 for s in n1["line"]) <= 10_000
    assert n1["line"][-1].endswith("line 4999")


def test_a_membership_window_names_both_changes_and_what_they_streamed() -> None:
    ops = [
        Op(0, 1_000_000, NEMESIS, "invoke", "start-membership"),
        Op(1, 9_000_000, NEMESIS, "info", "start-membership",
           value={"node": "n1", "via": "n4", "result": {"op": "removenode", "bytes": 12345, "seconds": 3.2}},
           extra={"action": "removenode"}),
        Op(2, 12_000_000, NEMESIS, "invoke", "stop-membership"),
        Op(3, 19_000_000, NEMESIS, "info", "stop-membership",
           value={"error": "InvalidRequest: n5 is LEAVING, not NORMAL"}, extra={"action": "decommission"}),
    ]
    windows, _ = render.nemesis_windows(ops, 20_000)
    assert len(windows) == 1
    w = windows[0]
    assert w["kind"] == "membership" and w["actions"] == ["removenode", "decommission"]
    assert w["targets"] == "removenode n1 (12,345 B streamed, 3.2 s) → failed: InvalidRequest: n5 is LEAVING, not NORMAL"
