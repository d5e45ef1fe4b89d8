"""Set histories judged per element: what a one-cell-per-element store promises at QUORUM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkers import linearizable, set_elements
from checkers.compose import check_all
from checkers.synth import HistoryBuilder, generate
from harness.cli import main
from harness.history import HistoryError, write_jsonl


def _non_atomic_read() -> HistoryBuilder:
    """A QUORUM read that merged a replica answering early with one answering late.

    Found by `harness sim --workload set --nemesis partition` (seed 39): the read shows 3, whose
    add began after 2's add was acknowledged, yet lacks 2 (2's add was concurrent with the read).
    """
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0)
    b.invoke(9, "read")  # stays open over both adds
    b.invoke(1, "add", 2).ok(1)
    b.invoke(2, "add", 3).ok(2)
    b.ok(9, [1, 3])
    b.invoke(9, "read").ok(9, [1, 2, 3])
    return b


def test_a_read_that_is_no_snapshot_is_per_element_linearizable_but_not_atomic() -> None:
    ops = _non_atomic_read().ops
    r = linearizable.check(ops, {"model": "set"})
    assert r.valid is True, r.anomalies
    assert r.details["per"] == "element" and r.counts["elements"] == 3
    atomic = linearizable.check(ops, {"model": "set", "atomic_reads": True})
    assert atomic.valid is False


def test_stale_read_of_an_acknowledged_element_is_named() -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0)
    b.invoke(1, "read").ok(1, [])
    r = set_elements.check(b.ops)
    assert r.valid is False and r.counts["not_linearizable"] == 1
    a = r.anomalies[0]
    assert "element 1" in a.explanation and "stale read" in a.explanation
    assert [o.index for o in a.ops] == [0, 1, 2, 3]


def test_element_that_vanishes_after_a_read_showed_it() -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).info(0)  # indeterminate: may show at any time after its invocation
    b.invoke(1, "read").ok(1, [1])
    b.invoke(1, "read").ok(1, [])
    r = set_elements.check(b.ops)
    assert r.valid is False and "vanished" in r.anomalies[0].explanation
    # Without the second read the info add simply took effect before the first.
    assert set_elements.check(b.ops[:4]).valid is True


def test_read_before_the_add_was_invoked_and_never_added_elements() -> None:
    b = HistoryBuilder()
    b.invoke(1, "read").ok(1, [5])
    b.invoke(0, "add", 5).ok(0)
    r = set_elements.check(b.ops)
    assert r.valid is False and "before its add was invoked" in r.anomalies[0].explanation
    b = HistoryBuilder()
    b.invoke(0, "add", 5).fail(0)
    b.invoke(1, "read").ok(1, [5, 6])
    r = set_elements.check(b.ops)
    assert r.valid is False and r.counts["not_linearizable"] == 2
    text = " ".join(a.explanation for a in r.anomalies)
    assert "whose add failed (op 1)" in text and "6, which was never added" in text


def test_info_adds_never_seen_and_repeated_adds_are_legal() -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).info(0)
    b.invoke(1, "add", 2).ok(1)
    b.invoke(1, "add", 2).ok(1)  # the same element again: it shows from the first add
    b.invoke(2, "read").ok(2, [2])
    b.invoke(0, "add", 3)  # never completed (an interrupted run)
    b.invoke(2, "read").ok(2, [2, 3])
    assert set_elements.check(b.ops).valid is True


def test_keys_are_separate_sets_and_bad_reads_are_clear_errors() -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1, key="a").ok(0)
    b.invoke(1, "read", key="b").ok(1, [])
    assert set_elements.check(b.ops).valid is True
    b.invoke(1, "read", key="a").ok(1, 7)
    with pytest.raises(HistoryError, match="must return a list"):
        set_elements.check(b.ops)


def test_generated_set_histories_agree_with_the_set_full_checker_in_strict_mode() -> None:
    # set-full's stale/reappeared/lost/unexpected are per-element facts: on histories whose
    # reads cannot run ahead of their adds, the two agree on every seed.
    for seed in range(30):
        ops = generate("set", n_ops=300, clients=5, keys=2, info_rate=0.1, seed=seed)
        assert set_elements.check(ops).valid is True, seed
        r = check_all(ops, {"model": "set", "set_linearizable": True})
        assert r.results["set"].valid is True and r.results["linearizable"].valid is True


def test_harness_check_takes_atomic_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "history.jsonl"
    write_jsonl(_non_atomic_read().ops, path)
    assert main(["check", "--history", str(path), "--model", "set", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["linearizable"] is True
    assert main(["check", "--history", str(path), "--model", "set", "--atomic-reads", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["summary"]["linearizable"] is False
    assert main(["check", "--history", str(path), "--model", "register", "--atomic-reads"]) == 254
    assert "--atomic-reads does not apply to the register model" in capsys.readouterr().err

