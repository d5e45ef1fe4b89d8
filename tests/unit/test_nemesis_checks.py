"""The nemesis-checks checker on hand-made histories: a scratch-table answer that differs from
what was written and a node that did not do what its commit failure policy says make a run
invalid; clean steps, and scratch mismatches under the clock nemesis, do not."""

from __future__ import annotations

from typing import Any

from checkers import nemesis_checks
from checkers.compose import check_all, default_checkers
from harness.history import Op


def _step(i: int, f: str, value: dict[str, Any]) -> list[Op]:
    return [Op(2 * i, 10 * i, "nemesis", "invoke", f), Op(2 * i + 1, 10 * i + 5, "nemesis", "info", f, value=value)]


CLEAN_SCRATCH = {"table": "ks.scratch_1", "via": "n2", "done": ["created", "dropped"], "wrong": [], "errors": []}
WRONG_SCRATCH = {**CLEAN_SCRATCH, "wrong": ["scratch-0 ['c1', 'c2'] after the deletes: read {'c1': 'x'}, wrote {}"]}
HELD = {"n3": {"policy": "stop", "expected": "refuse every later write until restarted", "seen": "writes stopped",
               "held": True}}
BROKEN = {"n3": {"policy": "die", "expected": "exit", "seen": "the node kept running", "held": False}}


def test_clean_steps_are_valid_and_counted() -> None:
    h = _step(0, "start-admin", {"scratch": CLEAN_SCRATCH}) + _step(1, "stop-disk", {"policies": HELD})
    r = nemesis_checks.check(h, {"nemeses": ["admin", "disk"]})
    assert r.valid is True and r.counts == {"scratch-tables": 1, "scratch-wrong-answer": 0, "policy-windows": 1,
                                            "policy-not-held": 0}


def test_a_wrong_scratch_answer_and_a_broken_policy_are_invalid() -> None:
    h = _step(0, "start-admin", {"scratch": WRONG_SCRATCH}) + _step(1, "stop-disk", {"policies": BROKEN})
    r = nemesis_checks.check(h, {"nemeses": ["admin", "disk"]})
    assert r.valid is False
    assert [a.kind for a in r.anomalies] == ["scratch-wrong-answer", "policy-not-held"]
    assert "ks.scratch_1" in r.anomalies[0].explanation and r.anomalies[0].ops[0].f == "start-admin"
    assert "commit_failure_policy = die" in r.anomalies[1].explanation and "exit" in r.anomalies[1].explanation


def test_skewed_clocks_excuse_scratch_mismatches_but_not_policies() -> None:
    h = _step(0, "start-admin", {"scratch": WRONG_SCRATCH})
    r = nemesis_checks.check(h, {"nemeses": ["admin", "clock"]})
    assert r.valid is True and "excused" in r.details
    h += _step(1, "stop-disk", {"policies": BROKEN})
    assert nemesis_checks.check(h, {"nemeses": ["admin", "clock", "disk"]}).valid is False


def test_it_runs_when_admin_or_disk_is_asked_for() -> None:
    assert "nemesis-checks" in default_checkers({"model": "register", "nemeses": ["disk"]})
    assert "nemesis-checks" in default_checkers({"model": "register", "nemeses": ["admin", "kill"]})
    assert "nemesis-checks" not in default_checkers({"model": "register", "nemeses": ["partition"]})
    h = _step(0, "stop-disk", {"policies": BROKEN})
    composed = check_all(h, {"model": "register", "nemeses": ["disk"], "checkers": ["nemesis-checks"]})
    assert composed.valid is False and composed.exit_code() == 1
