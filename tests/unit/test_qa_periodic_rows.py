"""A periodic-mode crash that loses a row write is allowed for linearizability too, as for a register."""

from __future__ import annotations

from typing import Any

import pytest

from checkers.compose import check_all
from harness.history import NEMESIS, Op

MS = 1_000_000  # history times are nanoseconds
PARAMS = {"model": "row", "replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM",
          "commitlog_sync_period_ms": 10_000}


def _row_history() -> list[Op]:
    """Row 1's c1 written 1 then 2 (acknowledged at 500 ms); a crash at 3 s loses the second;
    a read at 20 s returns c1 = 1."""
    return [
        Op(0, 0, 0, "invoke", "write", 1, {"c1": 1}),
        Op(1, 100 * MS, 0, "ok", "write", 1, {"c1": 1}, timestamp=1),
        Op(2, 400 * MS, 0, "invoke", "write", 1, {"c1": 2}),
        Op(3, 500 * MS, 0, "ok", "write", 1, {"c1": 2}, timestamp=2),
        Op(4, 3_000 * MS, NEMESIS, "invoke", "start-crash", None, None),
        Op(5, 3_000 * MS + 1, NEMESIS, "info", "start-crash", None,
           {"nodes": ["n1", "n2", "n3"], "unsynced_bytes": {"n1": 40}, "lost_unsynced": True}, extra={"action": "crash"}),
        Op(6, 20_000 * MS, 1, "invoke", "read", 1, None),
        Op(7, 20_100 * MS, 1, "ok", "read", 1, {"c1": 1}, extra={"timestamps": {"c1": 1}}),
    ]


def test_a_row_write_lost_in_a_periodic_crash_is_allowed() -> None:
    """The lost cell write is periodic-not-linearizable, not an anomaly; the run stays valid."""
    res = check_all(_row_history(), {**PARAMS, "commitlog_sync": "periodic"})
    lin = res.results["linearizable"]
    assert lin.valid is True and lin.counts["periodic-not-linearizable"] == 1, lin.to_json()
    assert res.valid is True, {n: r.valid for n, r in res.results.items()}


@pytest.mark.parametrize("mode", ["batch", "group"])
def test_the_same_row_loss_is_an_anomaly_in_batch_and_group_mode(mode: str) -> None:
    """Modes that acknowledge only fsynced writes allow no loss."""
    res = check_all(_row_history(), {**PARAMS, "commitlog_sync": mode})
    assert res.results["linearizable"].valid is False
    assert res.valid is False


def _many_keys_lost(n: int) -> list[Op]:
    """``n`` keys each written 1 then 2 (acknowledged by 500 ms); one crash at 3 s loses every
    second write; reads at 20 s return 1: more stale reads than a checker keeps as examples."""
    ops: list[Op] = []

    def add(t_ms: int, process: Any, type_: str, f: str, key: Any, value: Any, **kw: Any) -> None:
        ops.append(Op(len(ops), t_ms * MS, process, type_, f, key, value, **kw))

    for k in range(n):
        add(1 + k, k, "invoke", "write", k, 1)
        add(100 + k, k, "ok", "write", k, 1, timestamp=1)
        add(200 + k, k, "invoke", "write", k, 2)
        add(300 + k, k, "ok", "write", k, 2, timestamp=2)
    add(3_000, NEMESIS, "invoke", "start-crash", None, None)
    ops.append(Op(len(ops), 3_000 * MS + 1, NEMESIS, "info", "start-crash", None,
                  {"nodes": ["n1", "n2", "n3"], "unsynced_bytes": {"n1": 40}, "lost_unsynced": True},
                  extra={"action": "crash"}))
    for k in range(n):
        add(20_000 + 2 * k, 1000 + k, "invoke", "read", k, None)
        add(20_001 + 2 * k, 1000 + k, "ok", "read", k, 1, timestamp=1)
    return ops


def test_losses_beyond_the_kept_examples_are_judged_too() -> None:
    """30 stale reads from one periodic crash (a checker keeps 20 examples): all 30 allowed."""
    params = {**PARAMS, "model": "register", "commitlog_sync": "periodic"}
    res = check_all(_many_keys_lost(30), params)
    quorum = res.results["quorum"]
    assert quorum.counts["stale-read"] == 0 and quorum.counts["periodic-stale-read"] == 30, quorum.counts
    assert res.results["lww"].counts["periodic-lost-write"] == 30
    assert res.valid is True, {n: r.valid for n, r in res.results.items()}
    batch = check_all(_many_keys_lost(30), {**params, "commitlog_sync": "batch"})
    assert batch.results["quorum"].counts["stale-read"] == 30 and batch.valid is False


def test_a_rerun_keeps_the_usual_number_of_examples() -> None:
    """After a rerun that judged every finding, the ones left keep MAX_EXAMPLES per kind."""
    from checkers.result import MAX_EXAMPLES

    old, new = _many_keys_lost(30), _many_keys_lost(25)
    ops: list[Op] = []
    # Keys 0-29 lost their writes 9 s before the crash (beyond a 1 s period + slack: anomalies);
    # keys 100-124 just before it (allowed). Both groups exceed the kept examples.
    for op in old:
        if op.process != NEMESIS and op.f == "write":
            ops.append(op)
    for op in new:
        if op.process != NEMESIS and op.f == "write":
            ops.append(Op(0, op.time + 9_000 * MS, op.process + 5000, op.type, op.f, op.key + 100, op.value,
                          timestamp=op.timestamp))
    ops += [Op(0, 10_000 * MS, NEMESIS, "invoke", "start-crash", None, None),
            Op(0, 10_000 * MS + 1, NEMESIS, "info", "start-crash", None,
               {"nodes": ["n1", "n2", "n3"], "unsynced_bytes": {"n1": 40}, "lost_unsynced": True},
               extra={"action": "crash"})]
    for op in old:
        if op.process != NEMESIS and op.f == "read":
            ops.append(op)
    for op in new:
        if op.process != NEMESIS and op.f == "read":
            ops.append(Op(0, op.time + 1_000 * MS, op.process + 5000, op.type, op.f, op.key + 100, op.value,
                          timestamp=op.timestamp))
    ops.sort(key=lambda o: o.time)
    for i, op in enumerate(ops):
        op.index = i
    res = check_all(ops, {**PARAMS, "model": "register", "commitlog_sync": "periodic",
                          "commitlog_sync_period_ms": 1_000})
    quorum = res.results["quorum"]
    assert quorum.counts["periodic-stale-read"] >= 25 and quorum.counts["stale-read"] >= 30, quorum.counts
    assert quorum.valid is False
    assert 0 < len([a for a in quorum.anomalies if a.kind == "stale-read"]) <= MAX_EXAMPLES


def _set_reappears() -> list[Op]:
    """Element 1 added (acknowledged at 100 ms) and read; a crash at 3 s; a read at 5 s misses
    it (the replicas it reached lost it), a read at 6 s shows it again (a spared replica had it)."""
    return [
        Op(0, 0, 0, "invoke", "add", 0, 1), Op(1, 100 * MS, 0, "ok", "add", 0, 1),
        Op(2, 200 * MS, 1, "invoke", "read", 0, None), Op(3, 300 * MS, 1, "ok", "read", 0, [1]),
        Op(4, 3_000 * MS, NEMESIS, "invoke", "start-crash", None, None),
        Op(5, 3_000 * MS + 1, NEMESIS, "info", "start-crash", None,
           {"nodes": ["n1", "n2"], "unsynced_bytes": {"n1": 40}, "lost_unsynced": True}, extra={"action": "crash"}),
        Op(6, 5_000 * MS, 1, "invoke", "read", 0, None), Op(7, 5_100 * MS, 1, "ok", "read", 0, []),
        Op(8, 6_000 * MS, 1, "invoke", "read", 0, None), Op(9, 6_100 * MS, 1, "ok", "read", 0, [1]),
    ]


@pytest.mark.parametrize("mode, allowed", [("periodic", True), ("batch", False)])
def test_a_set_element_that_vanished_after_a_periodic_crash_is_allowed(mode: str, allowed: bool) -> None:
    """Reappeared is a loss-shaped finding like stale: allowed in periodic mode, not in batch."""
    params = {**PARAMS, "model": "set", "set_linearizable": True, "commitlog_sync": mode}
    res = check_all(_set_reappears(), params)
    s = res.results["set"]
    if allowed:
        assert s.valid is True and s.counts["periodic-reappeared"] == 1 and s.counts["reappeared"] == 0, s.counts
    else:
        assert s.valid is False and s.counts["reappeared"] == 1
