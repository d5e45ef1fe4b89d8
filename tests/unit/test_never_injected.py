"""A requested nemesis that never took effect makes the run unknown (issue 18), whether its
injections failed, changed nothing or never came: a run too short for one window of each
nemesis did not test the store under the faults asked for. Hand-made histories and run dirs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from checkers import campaign
from harness import cli, store
from harness.history import NEMESIS, Op, write_jsonl
from harness.report import render


def nem(i: int, t_s: float, type_: str, f: str, value: Any = None) -> Op:
    return Op(i, int(t_s * 1e9), NEMESIS, type_, f, value=value)


def window(i: int, t: float, name: str, value: Any) -> list[Op]:
    return [nem(i, t, "invoke", f"start-{name}"), nem(i + 1, t + 0.1, "info", f"start-{name}", value),
            nem(i + 2, t + 2, "invoke", f"stop-{name}"), nem(i + 3, t + 2.1, "info", f"stop-{name}", "healed")]


def test_a_nemesis_the_run_never_reached_makes_it_unknown_naming_it() -> None:
    ops = window(0, 1, "partition", {"description": "n1 | n2 n3"}) + window(4, 5, "kill", {"nodes": ["n2"]})
    r = campaign.check(ops, {"nemeses": ["partition", "kill", "pause", "clock"]})
    assert r.valid == "unknown"
    assert r.counts["failed_injections"] == 0 and r.counts["nemeses_never_injected"] == 2
    assert r.details["never_injected"] == ["pause", "clock"]
    assert r.details["reason"] == (
        "no injection of pause, clock took effect (pause, clock: never started: the run ended first): "
        "the store was not tested under the faults asked for; "
        "a longer --time-limit or a shorter --nemesis-interval gives each nemesis a window")
    assert r.anomalies == []  # nothing failed: there is no failed injection to show


def test_a_membership_window_that_changed_nothing_is_no_injection() -> None:
    ops = window(0, 1, "membership", {"action": "none", "members": ["n1", "n2", "n3"]})
    r = campaign.check(ops, {"nemeses": ["membership"]})
    assert r.valid == "unknown"
    assert "membership: 1 changed nothing" in r.details["reason"]
    assert "--time-limit" not in r.details["reason"]  # it did start: more time is not the cure named


def test_failed_and_declined_starts_are_told_apart() -> None:
    ops = window(0, 1, "membership", {"action": "none", "members": []}) + [
        nem(4, 4, "invoke", "start-membership"), nem(5, 4.5, "fail", "start-membership", {"error": "Boom: no"})]
    r = campaign.check(ops, {"nemeses": ["membership"]})
    assert "membership: 1 failed, 1 changed nothing" in r.details["reason"]


def test_each_requested_nemesis_taking_effect_once_is_valid() -> None:
    ops = window(0, 1, "partition", {"description": "n1 | n2"}) + window(4, 5, "pause", {"nodes": ["n1"]})
    r = campaign.check(ops, {"nemeses": ["partition", "pause"]})
    assert r.valid is True and r.details["never_injected"] == [] and "reason" not in r.details


def short_run(root: Path) -> Path:
    """A stored campaign asked for partition and pause whose time limit came before any pause."""
    run = store.new_run_dir(root, "register-partition-pause")
    ops = window(0, 1, "partition", {"description": "n1 | n2 n3"}) + [
        Op(4, int(2e9), 0, "invoke", "write", "k", 1), Op(5, int(2.1e9), 0, "ok", "write", "k", 1),
        Op(6, int(2.2e9), 0, "invoke", "read", "k"), Op(7, int(2.3e9), 0, "ok", "read", "k", 1)]
    write_jsonl(ops, run / store.HISTORY_FILE)
    store.write_json(run / store.TEST_FILE, {
        "name": "register-partition-pause", "start_time": 1.0, "end_time": 5.0,
        "options": {"workload": "register", "nemesis": "partition,pause"},
        "params": {"model": "register", "nemeses": ["partition", "pause"]}})
    return run


def test_the_reason_shows_in_results_junit_serve_the_report_and_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.junit import write_junit
    from harness.run import Outcome, check_run
    from harness.serve import describe_run

    run = short_run(tmp_path)
    composed = check_run(run)
    assert composed.valid == "unknown" and composed.exit_code() == 2
    saved = store.read_json(run / store.RESULTS_FILE)
    assert saved["valid"] == "unknown"
    reason = saved["checkers"]["campaign"]["details"]["reason"]
    assert reason.startswith("no injection of pause took effect (pause: never started")
    listed = describe_run(run, tmp_path)
    assert listed["verdict"] == "unknown" and listed["why"] == reason
    page = render.collect(run)
    assert page["valid"] == "unknown"
    assert [c["details"]["reason"] for c in page["checkers"] if c["name"] == "campaign"] == [reason]
    junit = tmp_path / "junit.xml"
    write_junit(junit, [Outcome(run, composed.valid, composed, 4, 4, 5.0, 1.0)])
    error = ET.parse(junit).getroot().find("testsuite/testcase[@name='campaign']/error")
    assert error is not None and error.text == reason
    capsys.readouterr()
    assert cli.main(["check", str(run)]) == 2
    out = capsys.readouterr().out
    assert f"campaign: {reason}" in out and "Overall: unknown" in out


def test_serve_lists_the_reason_under_the_run(tmp_path: Path) -> None:
    from harness.run import check_run
    from harness.serve import ResultsApp

    check_run(short_run(tmp_path))
    page = ResultsApp(tmp_path).index_page({})
    assert '<div class="why">unknown: no injection of pause took effect' in page
