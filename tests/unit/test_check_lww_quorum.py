"""Last-write-wins anomalies and quorum guarantees on hand-written and generated histories."""

from __future__ import annotations

import pytest

from checkers import lww, quorum
from checkers.quorum import replicas_for
from checkers.synth import HistoryBuilder, generate


def test_timestamp_inversion_and_the_write_it_silently_lost() -> None:
    """Clock skew: a later write gets a smaller timestamp, so LWW keeps the earlier value."""
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=2_000)  # node with a fast clock
    b.invoke(1, "write", 2, key="k").ok(1, ts=1_000)  # began after, stamped by a slow clock
    b.invoke(2, "read", key="k").ok(2, 1, ts=2_000)
    b.invoke(2, "read", key="k").ok(2, 1, ts=2_000)  # the final read
    r = lww.check(b.ops)
    assert r.valid is False
    assert r.counts["timestamp-inversion"] == 1 and r.counts["lost-write"] == 1
    inv = next(a for a in r.anomalies if a.kind == "timestamp-inversion")
    assert [o.index for o in inv.ops] == [0, 1, 2, 3]
    assert "began after the write of 1" in inv.explanation and "1000 < 2000" in inv.explanation
    lost = next(a for a in r.anomalies if a.kind == "lost-write")
    assert lost.ops[0].index == 2 and "final read (op 7) returned 1" in lost.explanation


def test_superseded_write_is_not_lost_and_unread_write_without_later_read_is_not_judged() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=10)
    b.invoke(0, "write", 2, key="k").ok(0, ts=20)
    b.invoke(1, "read", key="k").ok(1, 2)  # timestamp looked up from the write of 2
    b.invoke(0, "write", 3, key="k").ok(0, ts=30)  # no read after it: cannot be judged
    r = lww.check(b.ops)
    assert r.valid is True, [a.explanation for a in r.anomalies]


def test_timestamp_collision_and_phantom_read() -> None:
    b = HistoryBuilder()
    # "a" completed before "b" began, yet both carry timestamp 5: the tie-break can drop "b".
    b.invoke(0, "write", "a", key="k").ok(0, ts=5).invoke(1, "write", "b", key="k").ok(1, ts=5)
    b.invoke(2, "read", key="k").ok(2, "zzz")
    b.invoke(2, "read", key="k").ok(2, "a")
    r = lww.check(b.ops)
    assert r.counts["timestamp-collision"] == 1 and r.counts["phantom-read"] == 1
    # "b" lost the tie-break: the collision explains it, and it is also an acknowledged write
    # that no read could see.
    lost = next(a for a in r.anomalies if a.kind == "lost-write")
    assert r.counts["lost-write"] == 1 and "'b'" in lost.explanation
    phantom = next(a for a in r.anomalies if a.kind == "phantom-read")
    assert "'zzz'" in phantom.explanation and phantom.ops[1].index == 5


def test_concurrent_writes_that_tie_are_counted_not_anomalies() -> None:
    b = HistoryBuilder()
    # Concurrent writes may be ordered either way; the tie-break picks "b" everywhere.
    b.invoke(0, "write", "a", key="k").invoke(1, "write", "b", key="k").ok(0, ts=5).ok(1, ts=5)
    b.invoke(2, "read", key="k").ok(2, "b")
    r = lww.check(b.ops)
    assert r.valid is True, [a.explanation for a in r.anomalies]
    assert r.counts["concurrent-timestamp-tie"] == 1 and r.counts["lost-write"] == 0


def test_read_of_a_value_written_only_later_is_a_phantom() -> None:
    b = HistoryBuilder()
    b.invoke(0, "read", key="k").ok(0, 9)
    b.invoke(1, "write", 9, key="k").ok(1, ts=1)
    assert lww.check(b.ops).counts["phantom-read"] == 1


def test_lww_and_quorum_find_nothing_in_linearizable_histories() -> None:
    for seed in range(4):
        ops = generate("register", n_ops=2_000, clients=10, keys=4, seed=seed)
        assert lww.check(ops).valid is True
        r = quorum.check(ops, {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"})
        assert r.valid is True and r.counts["stale-read"] == 0


def _stale_history(read_cl: str | None = None) -> HistoryBuilder:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=100)
    b.invoke(0, "write", 2, key="k").ok(0, ts=200)
    b.invoke(1, "read", key="k", cl=read_cl).ok(1, 1, ts=100)  # began after write 2 completed
    return b


def test_stale_read_is_a_violation_when_quorums_overlap() -> None:
    r = quorum.check(_stale_history().ops, {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"})
    assert r.valid is False and r.counts["stale-read"] == 1
    a = r.anomalies[0]
    assert [o.index for o in a.ops] == [2, 3, 4, 5]
    assert "returned 1 (timestamp 100)" in a.explanation and "timestamp 200" in a.explanation


def test_stale_read_is_expected_when_r_plus_w_not_above_n() -> None:
    r = quorum.check(_stale_history().ops, {"replication_factor": 3, "read_cl": "ONE", "write_cl": "ONE"})
    assert r.valid is True
    assert r.counts["stale-read"] == 0 and r.counts["expected-stale-read"] == 1
    assert "expected" in r.details["note"]
    # A per-operation level overrides the test's: an ALL read must see the ONE write.
    r = quorum.check(_stale_history("ALL").ops, {"replication_factor": 3, "read_cl": "ONE", "write_cl": "ONE"})
    assert r.valid is False


def test_non_monotonic_reads() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=100)
    b.invoke(0, "write", 2, key="k").invoke(1, "read", key="k").ok(1, 2, ts=200)
    b.invoke(1, "read", key="k").ok(1, 1, ts=100)  # went backwards after a completed newer read
    b.ok(0, ts=200)
    params = {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "ONE"}
    r = quorum.check(b.ops, params)
    assert r.valid is False and r.counts["non-monotonic-read"] == 1 and r.counts["stale-read"] == 0
    r = quorum.check(b.ops, {**params, "read_cl": "ONE"})
    assert r.valid is True and r.counts["expected-non-monotonic-read"] == 1


@pytest.mark.parametrize("cl, rf, n", [("ONE", 3, 1), ("TWO", 3, 2), ("QUORUM", 5, 3), ("LOCAL_QUORUM", 3, 2),
                                       ("ALL", 5, 5), ("THREE", 2, 2), ("any", 3, 0)])
def test_replicas_for_levels(cl: str, rf: int, n: int) -> None:
    assert replicas_for(cl, rf) == n


def test_unknown_level_and_missing_rf_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown consistency level 'MOST'"):
        replicas_for("MOST", 3)
    with pytest.raises(ValueError, match="replication_factor"):
        quorum.check([], {})
