"""A run states what actually happened: failed injections, interruptions, empty nemesis lists,
and two campaigns in one store (issue 18). Unit tests on hand-made histories and objects."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import trio

from checkers import campaign
from checkers.compose import check_all, default_checkers
from harness import cli, store
from harness.history import NEMESIS, Op, write_jsonl
from harness.report import render
from harness.run import RunOptions, run_command
from nemesis import faults


def nem(i: int, t_s: float, type_: str, f: str, value: Any = None) -> Op:
    return Op(i, int(t_s * 1e9), NEMESIS, type_, f, value=value)


def failed_latency(i: int, t: float) -> list[Op]:
    return [nem(i, t, "invoke", "start-latency"),
            nem(i + 1, t + 0.5, "fail", "start-latency", {"error": "ProxyError: no proxy n1-n2"}),
            nem(i + 2, t + 1, "invoke", "stop-latency"), nem(i + 3, t + 1.1, "info", "stop-latency", "latency removed")]


def partition(i: int, t: float) -> list[Op]:
    return [nem(i, t, "invoke", "start-partition"),
            nem(i + 1, t + 0.1, "info", "start-partition", {"description": "n1 | n2 n3"}),
            nem(i + 2, t + 3, "invoke", "stop-partition"), nem(i + 3, t + 3.1, "info", "stop-partition", "network healed")]


# ---------------------------------------------------------------- the campaign checker


def test_every_injection_failing_makes_the_run_unknown() -> None:
    r = campaign.check(failed_latency(0, 1) + failed_latency(4, 5), {"nemeses": ["latency"]})
    assert r.valid == "unknown"
    assert r.counts["failed_injections"] == 2 and r.counts["injections"] == 0
    assert "no injection of latency took effect" in r.details["reason"]
    assert [a.kind for a in r.anomalies] == ["failed-injection"] * 2
    assert "ProxyError: no proxy n1-n2" in r.anomalies[0].explanation


def test_one_nemesis_failing_while_another_works_is_still_unknown() -> None:
    r = campaign.check(partition(0, 1) + failed_latency(4, 5), {"nemeses": ["partition", "latency"]})
    assert r.valid == "unknown" and r.details["never_injected"] == ["latency"]


def test_a_failure_is_forgiven_once_each_nemesis_took_effect() -> None:
    r = campaign.check(failed_latency(0, 1) + partition(4, 3) + [
        nem(8, 9, "invoke", "start-latency"), nem(9, 9.1, "info", "start-latency", {"nodes": ["n1"]})],
        {"nemeses": ["partition", "latency"]})
    assert r.valid is True and r.counts["failed_injections"] == 1 and r.counts["injections"] == 2


def test_older_histories_record_a_failed_start_as_info_with_an_error() -> None:
    ops = [nem(0, 1, "invoke", "start-clock"), nem(1, 2, "info", "start-clock", {"error": "DeployError: no chrony"})]
    assert campaign.check(ops, {"nemeses": ["clock"]}).valid == "unknown"


def test_interrupted_is_unknown_and_a_clean_run_is_valid() -> None:
    assert campaign.check(partition(0, 1), {"nemeses": ["partition"], "interrupted": True}).valid == "unknown"
    assert campaign.check(partition(0, 1), {"nemeses": ["partition"], "interrupted": False}).valid is True
    assert campaign.check([], {"nemeses": []}).valid is True


def test_the_campaign_checker_runs_only_for_campaign_histories() -> None:
    assert "campaign" not in default_checkers({"model": "register"})
    assert "campaign" in default_checkers({"model": "register", "nemeses": []})
    assert "campaign" in default_checkers({"model": "counter", "interrupted": True})


# ---------------------------------------------------------------- everywhere the verdict shows


def interrupted_run(root: Path) -> Path:
    """A stored campaign that was interrupted, with a failed and an effective injection."""
    run = store.new_run_dir(root, "register-partition")
    ops = partition(0, 1) + [Op(4, int(2e9), 0, "invoke", "write", "k", 1), Op(5, int(2.1e9), 0, "ok", "write", "k", 1),
                              Op(6, int(2.2e9), 0, "invoke", "read", "k"), Op(7, int(2.3e9), 0, "ok", "read", "k", 1)]
    write_jsonl(ops, run / store.HISTORY_FILE)
    store.write_json(run / store.TEST_FILE, {
        "name": "register-partition", "interrupted": True, "start_time": 1.0, "end_time": 5.0,
        "options": {"workload": "register", "nemesis": "partition"},
        "params": {"model": "register", "nemeses": ["partition"]}})
    return run


def test_an_interrupted_run_is_unknown_in_results_junit_serve_and_the_report(tmp_path: Path) -> None:
    from harness.junit import write_junit
    from harness.run import Outcome, check_run
    from harness.serve import describe_run

    run = interrupted_run(tmp_path)
    composed = check_run(run)
    assert composed.valid == "unknown" and composed.exit_code() == 2
    assert store.read_json(run / store.RESULTS_FILE)["valid"] == "unknown"
    assert describe_run(run, tmp_path)["verdict"] == "unknown"
    assert render.collect(run)["valid"] == "unknown"
    junit = tmp_path / "junit.xml"
    write_junit(junit, [Outcome(run, composed.valid, composed, 4, 4, 5.0, 1.0, interrupted=True)])
    case = ET.parse(junit).getroot().find("testsuite/testcase[@name='campaign']")
    assert case is not None and case.find("error") is not None
    assert "interrupted" in case.find("error").text


def test_harness_check_says_it_again_from_the_stored_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = interrupted_run(tmp_path)
    assert cli.main(["check", str(run)]) == 2
    assert "the run was interrupted" in capsys.readouterr().out


def test_a_failed_injection_is_a_red_mark_and_no_time_under_fault() -> None:
    windows, _ = render.nemesis_windows(partition(0, 1) + failed_latency(4, 5), 10_000_000)
    by_kind = {w["kind"]: w for w in windows}
    assert not by_kind["partition"].get("failed")
    lat = by_kind["latency"]
    assert lat["failed"] and lat["targets"] == "failed: ProxyError: no proxy n1-n2"
    assert lat["end"] == 5_500_000  # closed where it failed, not at the later stop


# ---------------------------------------------------------------- the nemesis schedule


class Failing:
    name = "latency"

    async def start(self, rng: random.Random) -> faults.Event:
        raise RuntimeError("no fault proxy on n1")

    async def stop(self) -> faults.Event:
        return faults.Event("stop-latency", "latency removed")

    async def heal(self) -> None:
        return None


async def test_a_start_that_raises_is_a_fail_op_and_not_an_active_fault() -> None:
    recorded: list[tuple[str, str, Any]] = []
    sched = faults.Schedule([Failing()], 1.0, random.Random(1), lambda t, f, v, a, rc: recorded.append((t, f, v)))
    await sched._step(sched.nemeses[0], start=True)
    assert recorded == [("invoke", "start-latency", None),
                        ("fail", "start-latency", {"error": "RuntimeError: no fault proxy on n1"})]
    assert sched.active == []


# ---------------------------------------------------------------- bad nemesis lists


@pytest.mark.parametrize("text", ["", " ", ",", " , "])
def test_an_empty_nemesis_list_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="names no nemesis"):
        faults.parse_nemeses(text)
    assert faults.parse_nemeses("none") == []


def test_harness_run_with_an_empty_nemesis_exits_254_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--nemesis", "", "--store", str(tmp_path)]) == 254
    err = capsys.readouterr().err.strip().splitlines()
    names = ", ".join(faults.NEMESES + tuple(faults.NEMESIS_ALIASES))
    assert err == [f"harness run: error: --nemesis '' names no nemesis; give a comma list of {names} ('none' for no faults)"]
    assert not any(tmp_path.iterdir())  # nothing was started


# ---------------------------------------------------------------- one campaign per store


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_live_campaign_lock_refuses_and_a_stale_one_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / store.LOCK_FILE).write_text(f"{os.getppid()}\n")
    with pytest.raises(store.StoreBusy, match=f"in use by a running campaign \\(pid {os.getppid()}"):
        store.StoreLock(tmp_path).acquire()
    (tmp_path / store.LOCK_FILE).write_text(f"{dead_pid()}\n")
    with store.StoreLock(tmp_path) as lock:
        assert lock.owner() == os.getpid()
        with pytest.raises(store.StoreBusy):
            # a second campaign of another process would see this pid alive
            other = store.StoreLock(tmp_path)
            (tmp_path / store.LOCK_FILE).write_text(f"{os.getppid()}\n")
            other.acquire()
        (tmp_path / store.LOCK_FILE).write_text(f"{os.getpid()}\n")
    assert not (tmp_path / store.LOCK_FILE).exists()


def test_harness_run_in_a_busy_store_exits_254_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / store.LOCK_FILE).write_text(f"{os.getppid()}\n")
    assert run_command(RunOptions(nemesis="none", store=str(tmp_path))) == 254
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"harness run: error: store {tmp_path} is in use by a running campaign")
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.LOCK_FILE]

