"""checkers/misplaced.py: data on a node that no ring of the run made a replica of the key, on
hand-made snapshots (wired through the convergence checker), and a planted repair bug in the sim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from checkers import convergence, misplaced
from harness import store
from harness.deploy.sim import run_one
from harness.history import Op
from harness.run import RunOptions
from node.ring import Murmur3Partitioner, SimpleStrategy, TokenMetadata

SIMPLE3 = {"class": "SimpleStrategy", "replication_factor": 3}
NODES = ["n1", "n2", "n3", "n4", "n5"]
RING = [(-(1 << 62), "n1"), (-(1 << 61), "n2"), (0, "n3"), (1 << 60, "n4"), (1 << 62, "n5")]
KEYS = [f"k{i}" for i in range(16)]


def _replicas(key: str, ring: list[tuple[int, str]] = RING) -> list[str]:
    meta = TokenMetadata(Murmur3Partitioner(), {n: [t for t, m in ring if m == n] for _, n in ring})
    return list(meta.endpoints_for(key.encode(), SimpleStrategy(3)))


def _header(label: str, ring: list[tuple[int, str]] = RING, **kw: Any) -> dict[str, Any]:
    return {"type": "pass", "pass": label, "read_repair": "BLOCKING", "hints_drained": True,
            "workload": {"model": "register", "column": "v"},
            "placement": {"node": "n1", "partitioner": "murmur3", "replication": SIMPLE3, "ring_changed": False,
                          "tokens": [[str(t), n] for t, n in ring], "locations": {}, "endpoints": []}, **kw}


def _snapshots(stray: list[dict[str, Any]], after_ring: list[tuple[int, str]] = RING,
               nonreplica: bool = True) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = [_header("before")]
    for label, ring in (("before", RING), ("after", after_ring)):
        if label == "after":
            info = {"nonreplica": {"nodes": NODES, "reads": 2 * len(KEYS), "unreadable": {}}} if nonreplica else {}
            recs.append(_header("after", ring, **info))
        for k in KEYS:
            for n in _replicas(k, ring):
                recs.append({"type": "replica", "pass": label, "key": k, "node": n, "replicas": _replicas(k, ring),
                             "range": [], "cells": [["v", 1, 100, False, None]], "partition_tombstone": None})
    return recs + stray


def _stray(key: str, node: str, replicas: list[str] | None = None, cells: Any = None, pt: Any = None) -> dict[str, Any]:
    return {"type": "nonreplica", "pass": "after", "key": key, "node": node,
            "replicas": _replicas(key) if replicas is None else replicas,
            "cells": [["v", 1, 100, False, None]] if cells is None else cells, "partition_tombstone": pt}


def _history(*nemesis: tuple[str, str]) -> list[Op]:
    ops = [Op(0, 10, 0, "invoke", "write", k, 1, node="n1") for k in KEYS[:1]]
    ops.append(Op(1, 20, 0, "ok", "write", KEYS[0], 1, node="n1", timestamp=100))
    for f, action in nemesis:
        ops.append(Op(len(ops), 10 * len(ops), "nemesis", "invoke", f, None, None))
        ops.append(Op(len(ops), 10 * len(ops), "nemesis", "info", f, None, {"node": "n6"}, extra={"action": action}))
    for k in KEYS:
        ops.append(Op(len(ops), 10 * len(ops), 0, "invoke", "write", k, 1, node="n1"))
        ops.append(Op(len(ops), 10 * len(ops), 0, "ok", "write", k, 1, node="n1", timestamp=100))
    return ops


def _outsider(key: str) -> str:
    return next(n for n in NODES if n not in _replicas(key))


def _check(recs: list[dict[str, Any]], history: list[Op] | None = None) -> Any:
    return convergence.check(_history() if history is None else history, {"replica_snapshots": recs})


def test_a_cell_on_a_node_no_ring_made_a_replica_is_misplaced_data() -> None:
    key = KEYS[3]
    node = _outsider(key)
    r = _check(_snapshots([_stray(key, node)]))
    assert r.valid is False
    [a] = [a for a in r.anomalies if a.kind == misplaced.KIND]
    assert a.key == key and a.details["node"] == node and "v=1 at 100" in a.explanation
    assert r.counts["misplaced-data"] == 1 and r.counts["misplaced_judged"] == 1 and r.counts["nonreplica_held"] == 1
    # A tombstone cell or a partition tombstone there is misplaced too.
    assert _check(_snapshots([_stray(key, node, cells=[], pt=150)])).counts["misplaced-data"] == 1
    assert _check(_snapshots([_stray(key, node, cells=[["v", None, 150, True, None]])])).counts["misplaced-data"] == 1


def test_nothing_held_by_non_replicas_is_valid_and_judged() -> None:
    r = _check(_snapshots([]))
    assert r.valid is True and r.counts["misplaced_judged"] == 1 and r.counts["misplaced-data"] == 0
    assert r.counts["nonreplica_reads"] == 2 * len(KEYS)


def test_a_replica_by_the_oracle_is_excused_whatever_the_record_says() -> None:
    key = KEYS[5]
    real = _replicas(key)[0]
    r = _check(_snapshots([_stray(key, real, replicas=[n for n in NODES if n != real][:3])]))
    assert r.valid is True and r.counts["nonreplica_excused"] == 1


@pytest.mark.parametrize("step", [("start-membership", "join"), ("stop-membership", "decommission"),
                                  ("start-membership", "removenode"), ("start-move", "move")])
def test_a_run_whose_ring_changed_is_not_judged(step: tuple[str, str]) -> None:
    key = KEYS[3]
    r = _check(_snapshots([_stray(key, _outsider(key))]), _history(step))
    assert r.valid is True and r.counts["misplaced_judged"] == 0 and r.counts["misplaced-data"] == 0
    assert "ring changed" in r.details["misplaced_unjudged"]
    # A membership step that changed nothing leaves the ring known.
    assert _check(_snapshots([_stray(key, _outsider(key))]), _history(("start-membership", "none"))).valid is False


def _flagged(f: str, ring_change: bool) -> list[Op]:
    ops = _history()
    ops.append(Op(len(ops), 10 * len(ops), "nemesis", "invoke", f, None, None))
    ops.append(Op(len(ops), 10 * len(ops), "nemesis", "info", f, None, {"node": "n6"},
                  extra={"action": "x", "ring_change": ring_change}))
    return ops


def test_a_step_that_says_it_changed_the_ring_is_believed_whatever_its_name() -> None:
    key = KEYS[3]
    recs = _snapshots([_stray(key, _outsider(key))])
    # A nemesis no name list knows, whose step says it moved tokens: nothing is judged.
    r = _check(recs, _flagged("start-rebalance", True))
    assert r.counts["misplaced_judged"] == 0 and "start-rebalance" in r.details["misplaced_unjudged"]
    # A step named like a membership change that says it changed nothing leaves the ring known.
    r = _check(recs, _flagged("start-membership", False))
    assert r.counts["misplaced_judged"] == 1 and r.counts["misplaced-data"] == 1


def test_the_schedule_records_whether_each_step_changed_the_ring() -> None:
    import random

    import trio

    from nemesis.faults import Event, Schedule

    class Mover:
        name, changes_ring = "mover", True

        def __init__(self) -> None:
            self.calls = 0

        async def start(self, rng: random.Random) -> Event:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("cut off half way")
            return Event("shuffle", {"moved": 1}, ring_change=True)

        async def stop(self) -> Event:
            return Event("settle", {"moved": 0})

        async def heal(self) -> None:
            return None

    recorded: list[tuple[str, str, bool]] = []

    async def main() -> None:
        sched = Schedule([Mover()], 0.01, random.Random(1), lambda t, f, v, a, rc: recorded.append((t, f, rc)))
        for _ in range(2):
            await sched._step(sched.nemeses[0], start=True)
            await sched._step(sched.nemeses[0], start=False)

    trio.run(main)
    done = [(t, f, rc) for t, f, rc in recorded if t != "invoke"]
    # The step that raised is a ring change too: it may have streamed before it failed.
    assert done == [("info", "start-mover", True), ("info", "stop-mover", False),
                    ("fail", "start-mover", True), ("info", "stop-mover", False)]


def test_passes_with_different_or_unstable_rings_are_not_judged() -> None:
    key = KEYS[3]
    moved = [(t + 1, n) for t, n in RING]
    r = _check(_snapshots([_stray(key, _outsider(key))], after_ring=moved))
    assert r.counts["misplaced_judged"] == 0 and r.counts["misplaced-data"] == 0
    recs = _snapshots([_stray(key, _outsider(key))])
    recs[0]["placement"]["ring_changed"] = True
    assert _check(recs).counts["misplaced_judged"] == 0
    recs = _snapshots([_stray(key, _outsider(key))])
    recs[0]["placement"] = {"error": "TooSlow"}
    assert _check(recs).counts["misplaced_judged"] == 0


def test_a_pass_without_non_replica_reads_judges_nothing() -> None:
    key = KEYS[3]
    r = _check(_snapshots([_stray(key, _outsider(key))], nonreplica=False))
    assert r.counts["misplaced_judged"] == 0 and "read no non-replica" in r.details["misplaced_unjudged"]


def _sim(tmp: Path, name: str) -> tuple[Any, Path]:
    run_dir = tmp / name
    run_dir.mkdir()
    opts = RunOptions(deploy="sim", seed=3, time_limit=4, nemesis="none", concurrency="1n", rate=100,
                      recovery_time=1, store=str(tmp), test_name="t", key_count=40, final_repair=True)
    return run_one(opts, run_dir, quiet=True), run_dir


def test_the_sim_reads_non_replicas_and_catches_a_repair_of_the_wrong_replicas(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run, run_dir = _sim(tmp_path, "clean")
    res = store.read_json(run_dir / "results.json")["checkers"]["convergence"]
    assert res["valid"] is True
    assert res["counts"]["misplaced_judged"] == 1 and res["counts"]["misplaced-data"] == 0
    assert res["counts"]["nonreplica_reads"] == 40 * 2  # 5 nodes, RF 3
    # Plant bench/mutants/47's bug: repair asks the replicas of a range's left token.
    from node import repair

    async def wrong_replicas(self: Any, ks: str, table: str, left: Any, right: Any, replicas: list[str],
                             stats: dict[str, Any]) -> None:
        ring = self.node.ring()
        wrong = list(ring.replicas_for_token(left, self.node.schema.keyspace(ks).strategy()))
        await original(self, ks, table, left, right, wrong, stats)

    original = repair.Repairer._repair_range
    monkeypatch.setattr(repair.Repairer, "_repair_range", wrong_replicas)
    _run, run_dir = _sim(tmp_path, "planted")
    res = store.read_json(run_dir / "results.json")["checkers"]["convergence"]
    assert res["valid"] is False and res["counts"]["misplaced-data"] > 0


# A sixth node's token inside n3's range (0, 2^60]: the keys between 0 and it move to n6.
N6_TOKEN = 1 << 58
JOINED = RING + [(N6_TOKEN, "n6")]


def _start(ring: list[tuple[int, str]] = RING) -> dict[str, Any]:
    return {"node": "n1", "partitioner": "murmur3", "tokens": [[str(t), n] for t, n in ring], "locations": {}}


def _final_snapshots(ring: list[tuple[int, str]], stray: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both passes on ``ring``, with the non-replica reads of the after pass."""
    recs: list[dict[str, Any]] = []
    for label in ("before", "after"):
        info = {"nonreplica": {"nodes": NODES, "reads": 2 * len(KEYS), "unreadable": {}}} if label == "after" else {}
        recs.append(_header(label, ring, **info))
        for k in KEYS:
            for n in _replicas(k, ring):
                recs.append({"type": "replica", "pass": label, "key": k, "node": n, "replicas": _replicas(k, ring),
                             "range": [], "cells": [["v", 1, 100, False, None]], "partition_tombstone": None})
    return recs + stray


def _changes(*steps: tuple[str, str, dict[str, Any]]) -> list[Op]:
    ops = _history()
    for f, action, value in steps:
        ops.append(Op(len(ops), 10 * len(ops), "nemesis", "invoke", f, None, None))
        ops.append(Op(len(ops), 10 * len(ops), "nemesis", "info", f, None, value,
                      extra={"action": action, "ring_change": True}))
    return ops


def _moved_key(before: list[tuple[int, str]], after: list[tuple[int, str]]) -> tuple[str, str]:
    """A key and a node that is its replica in ``before`` but not in ``after``."""
    for k in KEYS:
        lost = set(_replicas(k, before)) - set(_replicas(k, after))
        if lost:
            return k, sorted(lost)[0]
    raise AssertionError("no key moves")


def _judge(recs: list[dict[str, Any]], history: list[Op], start: Any) -> Any:
    return convergence.check(history, {"replica_snapshots": recs, "ring_at_start": start})


def test_a_join_is_replayed_from_the_first_ring_and_judged() -> None:
    join = ("start-membership", "join", {"node": "n6", "tokens": [str(N6_TOKEN)], "location": ["dc1", "rack1"]})
    key, lost = _moved_key(RING, JOINED)
    # The node that gave the range to n6 still holds it (no cleanup): an earlier ring explains it.
    r = _judge(_final_snapshots(JOINED, [_stray(key, lost, replicas=_replicas(key, JOINED))]), _changes(join), _start())
    assert r.valid is True and r.counts["misplaced_judged"] == 1 and r.counts["misplaced_rings"] == 2
    assert r.counts["nonreplica_excused"] == 1
    # A node no ring of the run made a replica of the key holding it is misplaced.
    never = next(n for n in NODES if n not in _replicas(key, RING) + _replicas(key, JOINED))
    r = _judge(_final_snapshots(JOINED, [_stray(key, never, replicas=_replicas(key, JOINED))]), _changes(join), _start())
    assert r.valid is False and r.counts["misplaced-data"] == 1


def test_a_removenode_then_a_join_are_replayed_through_the_ring_between_them() -> None:
    # n6 is removed (its range goes back to the next owners), then n7 joins at its token.
    final = RING + [(N6_TOKEN, "n7")]
    steps = _changes(("start-membership", "removenode", {"node": "n6", "via": "n1", "result": {}}),
                     ("stop-membership", "join", {"node": "n7", "tokens": [str(N6_TOKEN)], "location": ["dc1", "rack1"]}))
    # A node that held a key only in the ring between the two changes: the replay knows that ring.
    only_middle = [(k, n) for k in KEYS for n in _replicas(k, RING)
                   if n not in _replicas(k, JOINED) + _replicas(k, final)]
    assert only_middle
    key, node = only_middle[0]
    recs = _final_snapshots(final, [_stray(key, node, replicas=_replicas(key, final))])
    r = _judge(recs, steps, _start(JOINED))
    assert r.valid is True and r.counts["misplaced_judged"] == 1 and r.counts["misplaced_rings"] == 3
    assert r.counts["nonreplica_excused"] == 1
    # Without the first ring the same run is not judged.
    assert _judge(recs, steps, None).counts["misplaced_judged"] == 0


@pytest.mark.parametrize("case", ["no first ring", "failed join", "no tokens", "replay differs", "unknown change"])
def test_ring_changes_that_cannot_be_replayed_judge_nothing(case: str) -> None:
    key = KEYS[3]
    value: dict[str, Any] = {"node": "n6", "tokens": [str(N6_TOKEN)]}
    start: Any = _start()
    action = "join"
    if case == "no first ring":
        start = None
    elif case == "failed join":
        value = {"node": "n6", "error": "TooSlow: JOIN_TIMEOUT"}
    elif case == "no tokens":
        value = {"node": "n6", "tokens": None}
    elif case == "replay differs":
        value = {"node": "n6", "tokens": [str(N6_TOKEN + 1)]}
    else:
        action = "rebalance"
    never = next(n for n in NODES if n not in _replicas(key, RING) + _replicas(key, JOINED))
    r = _judge(_final_snapshots(JOINED, [_stray(key, never)]), _changes(("start-membership", action, value)), start)
    assert r.valid is True and r.counts["misplaced_judged"] == 0 and r.counts["misplaced-data"] == 0
    assert "ring changed" in r.details["misplaced_unjudged"]


def test_a_sim_membership_run_is_judged_against_every_ring_it_had(tmp_path: Path) -> None:
    opts = RunOptions(deploy="sim", seed=3, time_limit=9, nemesis="membership", nemesis_interval=2, concurrency="1n",
                      rate=50, recovery_time=2, store=str(tmp_path), test_name="t", ops_per_key=30)
    run_dir = tmp_path / "m"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True)
    test = store.read_json(run_dir / "test.json")
    assert test["ring_at_start"]["tokens"] and "error" not in test["ring_at_start"]
    res = store.read_json(run_dir / "results.json")["checkers"]["convergence"]
    assert res["counts"]["misplaced_judged"] == 1, res.get("details")
    assert res["counts"]["misplaced_rings"] >= 2 and res["counts"]["misplaced-data"] == 0


def test_the_sim_catches_a_stream_of_more_than_the_range_a_node_gains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A membership change that streams each gained range together with the piece before it puts
    data on a node no ring of the run made its replica: only the judged misplaced-data check sees
    it (every replica still holds what it should)."""
    from node import membership_ops

    def run(name: str) -> dict[str, Any]:
        opts = RunOptions(deploy="sim", seed=8, time_limit=12, nemesis="membership", nemesis_interval=2,
                          workload="set", key_count=400, read_repair="NONE", recovery_time=2,
                          store=str(tmp_path), test_name="t")
        run_dir = tmp_path / name
        run_dir.mkdir()
        run_one(opts, run_dir, quiet=True, report=False, keep_data=False)
        return store.read_json(run_dir / "results.json")["checkers"]["convergence"]

    clean = run("clean")
    assert clean["valid"] is True and clean["counts"]["misplaced_judged"] == 1
    original = membership_ops.transfer_plan

    def widened(old: Any, new: Any, strategy: Any) -> list[Any]:
        bounds = sorted(set(old.sorted_tokens) | set(new.sorted_tokens))
        return [membership_ops.Transfer(bounds[bounds.index(t.left) - 1], t.right, t.target, t.sources, t.losing)
                for t in original(old, new, strategy)]

    monkeypatch.setattr(membership_ops, "transfer_plan", widened)
    planted = run("planted")
    assert planted["valid"] is False and planted["counts"]["misplaced-data"] > 0
    assert planted["counts"]["misplaced_judged"] == 1
