"""checkers/movement.py on hand-made snapshots: once the ring settled, every acknowledged write is on every replica."""

from __future__ import annotations

from typing import Any

from checkers import convergence, movement
from checkers.compose import default_checkers
from harness.history import NEMESIS, Op

REG = {"model": "register", "column": "v"}
SET = {"model": "set", "element_prefix": "e", "element_digits": 9}
SETTLED = {n: {"n1": "NORMAL", "n2": "NORMAL", "n3": "NORMAL", "n4": "LEFT"} for n in ("n1", "n2", "n3")}
NO_HINTS = {"before": {}, "after": {}, "targets": [], "unknown": []}


class H:
    """A tiny history builder: client writes, adds and nemesis steps at increasing times."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def op(self, process: Any, type_: str, f: str, key: Any, value: Any, **kw: Any) -> None:
        self.t += 10
        self.ops.append(Op(len(self.ops), self.t, process, type_, f, key, value, **kw))

    def write(self, key: Any, value: Any, ts: int, node: str = "n1") -> None:
        self.op(0, "invoke", "write", key, value, node=node)
        self.op(0, "ok", "write", key, value, node=node, timestamp=ts)

    def add(self, key: Any, element: int, ts: int, node: str = "n1") -> None:
        self.op(1, "invoke", "add", key, element, node=node)
        self.op(1, "ok", "add", key, element, node=node, timestamp=ts)

    def nemesis(self, f: str, value: Any = None, action: str | None = None) -> None:
        self.op(NEMESIS, "invoke", f, None, None)
        self.op(NEMESIS, "info", f, None, value, extra={"action": action} if action else {})


def header(spec: dict[str, Any] = REG, views: Any = None, hints: Any = None, **kw: Any) -> dict[str, Any]:
    return {"type": "pass", "pass": "before", "read_repair": "BLOCKING", "workload": spec,
            "membership_views": SETTLED if views is None else views,
            "hints_held": NO_HINTS if hints is None else hints, "placement": {"ring_changed": False}, **kw}


def replica(key: Any, node: str, cells: list[list[Any]]) -> dict[str, Any]:
    return {"type": "replica", "pass": "before", "key": key, "node": node, "replicas": ["n1", "n2", "n3"],
            "range": ["-5", "7"], "cells": cells, "partition_tombstone": None}


def during_decommission(h: H, body: Any) -> None:
    """A decommission of n4 that ran while ``body`` wrote."""
    h.op(NEMESIS, "invoke", "start-membership", None, None)
    body()
    h.op(NEMESIS, "info", "start-membership", None, {"node": "n4", "result": {"ok": True}},
         extra={"action": "decommission"})


def run(h: H, records: list[dict[str, Any]]) -> Any:
    return movement.check(h.ops, {"model": "register", "replica_snapshots": records})


def test_a_replica_without_a_write_made_during_a_completed_change_is_flagged() -> None:
    h = H()
    h.write(1, 1, 100)
    during_decommission(h, lambda: h.write(1, 2, 200))
    recs = [header(), replica(1, "n1", [["v", 2, 200, False, None]]), replica(1, "n2", [["v", 2, 200, False, None]]),
            replica(1, "n3", [["v", 1, 100, False, None]])]
    r = run(h, recs)
    assert r.valid is False
    assert r.counts[movement.KIND] == 1
    assert r.anomalies[0].details["node"] == "n3"
    # The convergence checker's before pass forgives it: a membership change was under way.
    loose = convergence.check(h.ops, {"model": "register", "replica_snapshots": recs})
    assert loose.counts["replica-lost-write"] == 0


def test_every_replica_holding_the_write_is_valid() -> None:
    h = H()
    during_decommission(h, lambda: h.write(1, 2, 200))
    cells = [["v", 2, 200, False, None]]
    r = run(h, [header(), *(replica(1, n, cells) for n in ("n1", "n2", "n3"))])
    assert r.valid is True
    assert r.counts["judged"] == 1 and r.counts["replicas"] == 3


def test_a_set_element_missing_on_a_replica_is_flagged() -> None:
    h = H()
    during_decommission(h, lambda: (h.add(7, 1, 100), h.add(7, 2, 200)))
    full = [["e000000001", None, 100, False, None], ["e000000002", None, 200, False, None]]
    r = movement.check(h.ops, {"model": "set", "replica_snapshots": [
        header(SET), replica(7, "n1", full), replica(7, "n2", full), replica(7, "n3", full[:1])]})
    assert r.valid is False
    assert "2" in r.anomalies[0].explanation


def test_another_fault_during_the_write_brings_the_membership_excuse_back() -> None:
    h = H()
    h.nemesis("start-partition", {"grudge": {}})

    def body() -> None:
        h.write(1, 2, 200)

    during_decommission(h, body)
    h.nemesis("stop-partition", {})
    recs = [header(), replica(1, "n1", [["v", 2, 200, False, None]]), replica(1, "n2", [["v", 2, 200, False, None]]),
            replica(1, "n3", [])]
    assert run(h, recs).valid is True


def test_a_ring_still_moving_is_not_judged() -> None:
    h = H()
    during_decommission(h, lambda: h.write(1, 2, 200))
    views = {**SETTLED, "n2": {"n1": "NORMAL", "n2": "NORMAL", "n3": "NORMAL", "n4": "LEAVING"}}
    recs = [header(views=views), replica(1, "n3", [])]
    r = run(h, recs)
    assert r.valid is True and "LEAVING" in r.details["not_judged"]
    disagree = {**SETTLED, "n3": {"n1": "NORMAL", "n2": "NORMAL", "n3": "NORMAL", "n4": "NORMAL"}}
    assert "disagreed" in run(h, [header(views=disagree), replica(1, "n3", [])]).details["not_judged"]
    assert run(h, [header(views={}), replica(1, "n3", [])]).valid is True


def test_hinted_replicas_left_coordinators_and_runs_without_changes_are_excused() -> None:
    h = H()
    during_decommission(h, lambda: h.write(1, 2, 200))
    hints = {**NO_HINTS, "targets": ["n3"]}
    assert run(h, [header(hints=hints), replica(1, "n3", [])]).counts["skipped_hinted"] == 1
    h2 = H()
    during_decommission(h2, lambda: h2.write(1, 2, 200, node="n4"))  # through the node that left
    assert run(h2, [header(), replica(1, "n3", [])]).valid is True
    h3 = H()
    h3.write(1, 2, 200)
    assert run(h3, [header(), replica(1, "n3", [])]).details["not_judged"].startswith("no membership change")


def test_a_failed_change_or_unknown_hints_are_not_judged_as_valid() -> None:
    h = H()
    h.op(NEMESIS, "invoke", "start-membership", None, None)
    h.write(1, 2, 200)
    h.op(NEMESIS, "info", "start-membership", None, {"error": "TooSlowError: "}, extra={"action": "join"})
    assert "failed" in run(h, [header(), replica(1, "n3", [])]).details["not_judged"]
    h2 = H()
    during_decommission(h2, lambda: h2.write(1, 2, 200))
    assert run(h2, [header(hints={**NO_HINTS, "unknown": ["n2"]}), replica(1, "n3", [])]).valid == "unknown"


def test_compose_runs_it_beside_the_convergence_checker() -> None:
    assert "movement" in default_checkers({"model": "register", "replica_snapshots": "x"})
    assert "movement" not in default_checkers({"model": "register"})
