"""JUnit XML a CI test report can show: distinct suites per campaign, timestamp, hostname, seed,
per-checker time, and a file that exists while a campaign runs (issue 18)."""

from __future__ import annotations

import datetime
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from checkers.compose import check_all
from harness import store
from harness.history import Op, write_jsonl
from harness.junit import Running, write_junit
from harness.run import Outcome


def outcome(root: Path, seed: int, stale: bool) -> Outcome:
    run = store.new_run_dir(root, "register-partition")  # same second: the second gets a -2 suffix
    # A partition window that took effect: the campaign checker calls a run whose requested
    # nemesis never did anything unknown, which is not what the first suite is about.
    ops = [Op(0, 500, "nemesis", "invoke", "start-partition"),
           Op(1, 600, "nemesis", "info", "start-partition", None, {"cut": [["n1"], ["n2", "n3"]]}),
           Op(2, 1_000, 0, "invoke", "write", "k", 1), Op(3, 2_000, 0, "ok", "write", "k", 1),
           Op(4, 3_000, 1, "invoke", "read", "k"), Op(5, 4_000, 1, "ok", "read", "k", None if stale else 1),
           Op(6, 4_500, "nemesis", "invoke", "stop-partition"), Op(7, 4_600, "nemesis", "info", "stop-partition")]
    write_jsonl(ops, run / store.HISTORY_FILE)
    composed = check_all(run / store.HISTORY_FILE, {"model": "register", "nemeses": ["partition"], "interrupted": stale})
    return Outcome(run, composed.valid, composed, 4, 4, 12.5, 10.0, started=1_764_583_200.0, seed=seed)


def test_suites_are_distinct_and_carry_ci_fields(tmp_path: Path) -> None:
    outcomes = [outcome(tmp_path, 7, False), outcome(tmp_path, 8, True)]
    path = tmp_path / "junit.xml"
    write_junit(path, outcomes)
    suites = ET.parse(path).getroot().findall("testsuite")
    assert len({s.get("name") for s in suites}) == 2
    assert suites[0].get("name") == f"register-partition/{outcomes[0].run_dir.name}"
    for s, o in zip(suites, outcomes):
        assert s.get("hostname") == socket.gethostname()
        assert s.get("timestamp") == datetime.datetime.fromtimestamp(1_764_583_200).strftime("%Y-%m-%dT%H:%M:%S")
        assert s.get("time") == "12.5"
        props = {p.get("name"): p.get("value") for p in s.find("properties")}
        assert props == {"run_dir": str(o.run_dir), "seed": str(o.seed)}
        for case in s.findall("testcase"):
            assert float(case.get("time")) >= 0 and case.get("classname") == s.get("name")
    assert suites[0].get("errors") == "0" and suites[0].get("failures") == "0"
    # the second was interrupted and read a value never written: invalid, and the campaign unknown
    assert suites[1].get("failures") == "1" and suites[1].get("errors") == "1"
    error = suites[1].find("testcase[@name='campaign']/error")
    assert error is not None and "the run was interrupted" in error.text


def test_a_running_campaign_is_in_the_file_until_it_finishes(tmp_path: Path) -> None:
    done = outcome(tmp_path, 7, False)
    path = tmp_path / "junit.xml"
    running = tmp_path / "register-partition" / "20251201T100000"
    write_junit(path, [done], Running(running, 1_764_583_200.0, 8))
    suites = ET.parse(path).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"register-partition/{done.run_dir.name}",
                                               "register-partition/20251201T100000"]
    assert suites[1].get("errors") == "1"
    error = suites[1].find("testcase/error")
    assert error.get("type") == "incomplete" and "never finished" in error.text
    write_junit(path, [done])
    assert len(ET.parse(path).getroot().findall("testsuite")) == 1
    assert not (tmp_path / "junit.xml.tmp").exists()
