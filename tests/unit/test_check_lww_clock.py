"""LWW under clock faults: same-coordinator inversions, expected cross-node ones, the tie budget."""

from __future__ import annotations

from typing import Any

from checkers import linearizable, lww
from checkers.synth import HistoryBuilder, generate
from harness.history import Op


def _through(ops: list[Op], nodes: dict[int, str]) -> list[Op]:
    """Set the coordinator of each client op from its process (HistoryBuilder has no node)."""
    for o in ops:
        if isinstance(o.process, int):
            o.node = nodes.get(o.process)
    return ops


def _inverted(same_node: bool, clock: bool = False, restart: bool = False) -> list[Op]:
    b = HistoryBuilder()
    if clock:
        b.nemesis("start-clock", {"delta_ms": {"n1": 3000}})
    b.invoke(0, "write", 1, key="k").ok(0, ts=2_000)
    if restart:
        b.nemesis("start-kill", {"nodes": ["n1"]})
    b.invoke(1, "write", 2, key="k").ok(1, ts=1_000)
    b.invoke(2, "read", key="k").ok(2, 1, ts=2_000)
    b.invoke(2, "read", key="k").ok(2, 1, ts=2_000)
    return _through(b.ops, {0: "n1", 1: "n1" if same_node else "n2", 2: "n3"})


def test_an_inversion_through_one_coordinator_is_always_an_anomaly() -> None:
    for clock in (False, True):
        r = lww.check(_inverted(same_node=True, clock=clock))
        assert r.valid is False
        assert r.counts["same-coordinator-inversion"] == 1 and r.counts["timestamp-inversion"] == 0
        a = next(a for a in r.anomalies if a.kind == "same-coordinator-inversion")
        assert a.details["node"] == "n1" and "same node" in a.explanation


def test_a_restart_in_between_excuses_a_same_coordinator_inversion() -> None:
    r = lww.check(_inverted(same_node=True, clock=True, restart=True))
    assert r.counts["same-coordinator-inversion"] == 0 and r.counts["inversion-across-restart"] == 1
    assert r.valid is True, [a.explanation for a in r.anomalies]


def test_cross_node_inversions_are_what_lww_allows_under_clock_faults_only() -> None:
    r = lww.check(_inverted(same_node=False, clock=True))
    assert r.valid is True, [a.explanation for a in r.anomalies]
    assert r.counts["expected-timestamp-inversion"] == 1 and r.counts["discarded-by-inversion"] == 1
    assert r.counts["lost-write"] == 0 and "clock" in r.details["expected_note"]
    assert [a["kind"] for a in r.details["expected"]] == ["timestamp-inversion"]
    # The same history without clock faults: the inversion and the write it lost are anomalies.
    r = lww.check(_inverted(same_node=False, clock=False))
    assert r.valid is False
    assert r.counts["timestamp-inversion"] == 1 and r.counts["lost-write"] == 1


def test_linearizability_leaves_clock_inverted_keys_to_lww() -> None:
    ops = _inverted(same_node=False, clock=True)
    r = linearizable.check(ops, {"model": "register"})
    assert r.valid is True and r.counts["skipped_keys_clock_inversion"] == 1
    # Without clock faults the key is searched, and it is not linearizable.
    assert linearizable.check(_inverted(same_node=False), {"model": "register"}).valid is False


def _concurrent_ties(pairs: int, spacing_ns: int) -> list[Op]:
    """``pairs`` pairs of concurrent writes through two nodes, each pair tied on one timestamp."""
    b = HistoryBuilder()
    t = 0
    for i in range(pairs):
        t += spacing_ns
        b.invoke(0, "write", 2 * i + 1, key="k", t=t).invoke(1, "write", 2 * i + 2, key="k", t=t + 1)
        b.ok(0, ts=1_000_000 + 1_000 * i, t=t + 2).ok(1, ts=1_000_000 + 1_000 * i, t=t + 3)
    b.invoke(2, "read", key="k", t=t + 10).ok(2, 2 * pairs, t=t + 11)
    return _through(b.ops, {0: "n1", 1: "n2", 2: "n3"})


def test_ties_within_the_budget_are_counted_and_beyond_it_are_an_anomaly() -> None:
    # 1 ms between pairs: 40 writes over 20 ms tie about 40² µs / 40 ms = 0.04 times by chance.
    few = lww.check(_concurrent_ties(2, 1_000_000))
    assert few.valid is True and few.counts["concurrent-timestamp-tie"] == 2
    many = lww.check(_concurrent_ties(20, 1_000_000))
    expected, budget = lww.tie_budget(lww.collect(_concurrent_ties(20, 1_000_000))[0])
    assert budget < 20 and expected < 0.1
    assert many.valid is False and many.counts["timestamp-tie"] == 1
    a = next(a for a in many.anomalies if a.kind == "timestamp-tie")
    assert a.details["ties"] == 20 and a.details["budget"] == budget
    # The same ties packed into a few microseconds are what chance gives at that write rate.
    assert lww.check(_concurrent_ties(20, 100)).counts["timestamp-tie"] == 0


def test_generated_linearizable_histories_have_no_inversions_or_tie_overruns() -> None:
    for seed in range(3):
        ops: list[Any] = generate("register", n_ops=1_500, clients=6, keys=3, seed=seed)
        r = lww.check(_through(ops, {p: f"n{p % 3}" for p in range(100)}))
        assert r.valid is True, [a.explanation for a in r.anomalies][:3]
        assert r.counts["same-coordinator-inversion"] == 0
