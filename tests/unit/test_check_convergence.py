"""The per-replica convergence checker on hand-made snapshots and histories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers import convergence
from checkers.compose import check_all, default_checkers
from harness.history import Op

REG = {"model": "register", "column": "v"}
SET = {"model": "set", "element_prefix": "e", "element_digits": 9}


class H:
    """A tiny history builder."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def op(self, process: int, type_: str, f: str, key: Any, value: Any, **kw: Any) -> None:
        self.t += 10
        extra = kw.pop("extra", {})
        self.ops.append(Op(len(self.ops), self.t, process, type_, f, key, value, extra=extra, **kw))

    def write(self, key: Any, value: Any, ts: int | None, result: str = "ok", node: str = "n1") -> None:
        self.op(0, "invoke", "write", key, value, node=node)
        self.op(0, result, "write", key, value, node=node, timestamp=ts if result == "ok" else None)

    def add(self, key: Any, element: int, ts: int, result: str = "ok") -> None:
        self.op(1, "invoke", "add", key, element)
        self.op(1, result, "add", key, element, timestamp=ts if result == "ok" else None)

    def final_all(self, key: Any, value: Any, ts: int | None = None) -> None:
        self.op(2, "invoke", "read", key, None, cl="ALL", extra={"final": True})
        self.op(2, "ok", "read", key, value, cl="ALL", timestamp=ts, extra={"final": True})


def header(label: str, spec: dict[str, Any] = REG, **kw: Any) -> dict[str, Any]:
    return {"type": "pass", "pass": label, "read_repair": "BLOCKING", "workload": spec,
            **({"hints_drained": True} if label == "after" else {}), **kw}


def replica(label: str, key: Any, node: str, cells: list[list[Any]] | None, error: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"type": "replica", "pass": label, "key": key, "node": node,
                           "replicas": ["n1", "n2", "n3"], "range": ["-5", "7"]}
    if error is not None:
        rec["error"] = error
    else:
        rec["cells"] = cells or []
        rec["partition_tombstone"] = None
    return rec


def reg_cells(value: Any, ts: int) -> list[list[Any]]:
    return [["v", value, ts, False, None]]


def set_cells(*elements: int) -> list[list[Any]]:
    return [[f"e{x:09d}", 1, 100 + x, False, None] for x in elements]


def run(history: H, records: list[dict[str, Any]], model: str = "register") -> Any:
    return convergence.check(history.ops, {"model": model, "replica_snapshots": records})


def test_register_replicas_holding_the_newest_acknowledged_write_are_valid() -> None:
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200)
    h.final_all(1, 2, 200)
    recs = [header("before"), *(replica("before", 1, n, reg_cells(2, 200)) for n in ("n1", "n2", "n3")),
            header("after"), *(replica("after", 1, n, reg_cells(2, 200)) for n in ("n1", "n2", "n3"))]
    r = run(h, recs)
    assert r.valid is True, r.anomalies
    assert r.counts["after_replicas"] == 3 and r.counts["diverged-after-repair"] == 0


def test_a_replica_not_yet_converged_before_repair_is_informational() -> None:
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200)
    recs = [header("before"), replica("before", 1, "n1", reg_cells(2, 200)), replica("before", 1, "n2", reg_cells(1, 100)),
            replica("before", 1, "n3", []),
            header("after"), *(replica("after", 1, n, reg_cells(2, 200)) for n in ("n1", "n2", "n3"))]
    r = run(h, recs)
    assert r.valid is True
    assert r.counts["before_stale"] == 1 and r.counts["before_missing"] == 1
    assert r.counts["not-yet-converged"] == 2 and r.counts["before_keys_disagreeing"] == 1
    table = [t for t in r.details["disagreements"] if t["pass"] == "before"]
    assert table and {row["node"]: row["problems"] for row in table[0]["replicas"]} == {
        "n1": [], "n2": ["stale"], "n3": ["missing"]}


def test_a_stale_replica_after_repair_is_an_anomaly_naming_key_replica_and_range() -> None:
    h = H()
    h.write(7, 1, 100)
    h.write(7, 2, 200)
    recs = [header("after"), replica("after", 7, "n1", reg_cells(2, 200)), replica("after", 7, "n2", reg_cells(2, 200)),
            replica("after", 7, "n3", reg_cells(1, 100))]
    r = run(h, recs)
    assert r.valid is False
    [a] = r.anomalies
    assert a.kind == "diverged-after-repair" and a.key == 7 and a.details["node"] == "n3"
    assert a.details["problems"] == ["stale"]
    assert r.details["ranges"] == [{"pass": "after", "range": ["-5", "7"], "replicas": ["n1", "n2", "n3"], "keys": 1,
                                    "disagreeing": ["n3"]}]


def test_a_value_no_write_was_invoked_with_is_extra() -> None:
    h = H()
    h.write(1, 1, 100)
    recs = [header("after"), replica("after", 1, "n1", reg_cells(1, 100)), replica("after", 1, "n2", reg_cells(1, 100)),
            replica("after", 1, "n3", reg_cells(99, 300))]
    r = run(h, recs)
    assert r.valid is False
    assert r.anomalies[0].details["problems"] == ["extra"]


def test_an_indeterminate_write_on_one_replica_is_fine_without_a_final_all_read() -> None:
    # The write may or may not have happened; nothing promised the other replicas would get it.
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, None, result="info")
    recs = [header("after"), replica("after", 1, "n1", reg_cells(2, 150)), replica("after", 1, "n2", reg_cells(1, 100)),
            replica("after", 1, "n3", reg_cells(1, 100))]
    assert run(h, recs).valid is True


def test_replicas_that_differ_after_a_final_all_read_with_blocking_read_repair_diverged() -> None:
    # The ALL read returned the indeterminate write's value: read repair had to write it back.
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, None, result="info")
    h.final_all(1, 2, 150)
    recs = [header("after"), replica("after", 1, "n1", reg_cells(2, 150)), replica("after", 1, "n2", reg_cells(1, 100)),
            replica("after", 1, "n3", reg_cells(2, 150))]
    r = run(h, recs)
    assert r.valid is False
    assert [a.details["node"] for a in r.anomalies] == ["n2"]
    # With read_repair NONE the same snapshot promises nothing beyond the acknowledged write.
    recs[0] = {**recs[0], "read_repair": "NONE"}
    assert run(h, recs).valid is True


def test_set_replicas_missing_an_acknowledged_element_or_holding_an_unknown_one() -> None:
    h = H()
    for x in (1, 2, 3):
        h.add(5, x, 100 + x)
    h.add(5, 4, 0, result="info")
    good = [header("after", SET), replica("after", 5, "n1", set_cells(1, 2, 3, 4)), replica("after", 5, "n2", set_cells(1, 2, 3)),
            replica("after", 5, "n3", set_cells(1, 2, 3))]
    assert run(h, good, "set").valid is True
    bad = [header("after", SET), replica("after", 5, "n1", set_cells(1, 2, 3)), replica("after", 5, "n2", set_cells(1, 3)),
           replica("after", 5, "n3", set_cells(1, 2, 3, 77))]
    r = run(h, bad, "set")
    assert r.valid is False
    problems = {a.details["node"]: a.details["problems"] for a in r.anomalies}
    assert problems == {"n2": ["missing"], "n3": ["extra"]}
    rows = {row["node"]: row for t in r.details["disagreements"] for row in t["replicas"]}
    assert rows["n2"]["missing"] == [2] and rows["n3"]["extra"] == [77]


def test_an_unreadable_replica_or_pending_hints_make_the_verdict_unknown() -> None:
    h = H()
    h.write(1, 1, 100)
    recs = [header("after"), replica("after", 1, "n1", reg_cells(1, 100)), replica("after", 1, "n2", reg_cells(1, 100)),
            replica("after", 1, "n3", None, error="TooSlowError: ")]
    r = run(h, recs)
    assert r.valid == "unknown" and "n3" in r.details["reason"]
    recs = [header("after", hints_drained=False, hints_pending={"n1": {"n3": 120}}),
            *(replica("after", 1, n, reg_cells(1, 100)) for n in ("n1", "n2", "n3"))]
    assert run(h, recs).valid == "unknown"
    assert run(h, [header("before")]).valid == "unknown"  # no pass after the anti-entropy pass


def test_compose_runs_the_checker_only_for_runs_with_snapshots(tmp_path: Path) -> None:
    assert "convergence" not in default_checkers({"model": "register", "replication_factor": 3})
    h = H()
    h.write(1, 1, 100)
    snap = tmp_path / "replicas.jsonl"
    snap.write_text("".join(json.dumps(r) + "\n" for r in [
        header("after"), *(replica("after", 1, n, reg_cells(1, 100)) for n in ("n1", "n2"))]))
    params = {"model": "register", **convergence.params_for_run(tmp_path)}
    assert "convergence" in default_checkers(params)
    composed = check_all(h.ops, params)
    assert composed.results["convergence"].valid is True
    assert composed.results["convergence"].counts["after_replicas"] == 2


def _hints(targets: list[str], unknown: list[str] | None = None) -> dict[str, Any]:
    return {"hints_held": {"before": {}, "after": {}, "targets": targets, "unknown": unknown or []}}


def _lost_on_n3(h: H, **hints: Any) -> Any:
    recs = [header("before", **_hints(**hints)), replica("before", 1, "n1", reg_cells(2, 200)),
            replica("before", 1, "n2", reg_cells(2, 200)), replica("before", 1, "n3", reg_cells(1, 100)),
            header("after"), *(replica("after", 1, n, reg_cells(2, 200)) for n in ("n1", "n2", "n3"))]
    return run(h, recs)


def _nemesis(h: H, f: str, value: Any, action: str) -> None:
    h.t += 10
    h.ops.append(Op(len(h.ops), h.t, "nemesis", "invoke", f, None, None))
    h.t += 10
    h.ops.append(Op(len(h.ops), h.t, "nemesis", "info", f, None, value, extra={"action": action}))


def test_a_replica_lacking_an_acknowledged_write_nothing_can_restore_lost_it() -> None:
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    r = _lost_on_n3(h, targets=[])
    assert r.valid is False
    [a] = r.anomalies
    assert a.kind == "replica-lost-write" and a.details["node"] == "n3" and "through n2" in a.explanation
    assert r.counts["before_lost_on_replica"] == 1


def test_a_hint_held_for_the_replica_or_unknown_hints_excuse_a_missing_write() -> None:
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    assert _lost_on_n3(h, targets=["n3"]).valid is True
    assert _lost_on_n3(h, targets=[], unknown=["n4"]).valid is True


def test_a_killed_coordinator_or_a_membership_change_excuses_a_missing_write() -> None:
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    _nemesis(h, "start-kill", {"nodes": ["n2"]}, "kill")
    assert _lost_on_n3(h, targets=[]).valid is True
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    _nemesis(h, "start-membership", {"node": "n6", "result": {}}, "join")
    # ... while another fault ran (a pending replica that looked down gets no hint); a
    # membership change alone excuses nothing (tests/unit/test_sim_pending_ranges.py).
    _nemesis(h, "start-partition", {"grudge": {}}, "partition")
    assert _lost_on_n3(h, targets=[]).valid is True
    # A kill long after the hint was stored excuses nothing (the hint is on disk).
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    h.t += 60_000_000_000
    _nemesis(h, "start-kill", {"nodes": ["n2"]}, "kill")
    assert _lost_on_n3(h, targets=[]).valid is False


def test_the_pass_right_after_the_final_reads_is_judged_on_what_read_repair_promised() -> None:
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, None, result="info")
    h.final_all(1, 2, 150)
    recs = [header("read-repair"), replica("read-repair", 1, "n1", reg_cells(2, 150)),
            replica("read-repair", 1, "n2", reg_cells(1, 100)), replica("read-repair", 1, "n3", reg_cells(2, 150)),
            header("after"), *(replica("after", 1, n, reg_cells(2, 150)) for n in ("n1", "n2", "n3"))]
    r = run(h, recs)
    assert r.valid is False
    assert [(a.kind, a.details["node"]) for a in r.anomalies] == [("diverged-after-repair", "n2")]
    assert r.counts["read-repair_stale"] == 1 and r.counts["after_stale"] == 0


def test_a_replica_crashed_with_unsynced_writes_does_not_owe_them() -> None:
    # A crash (the data-path nemesis) may take a replica's unsynced writes: allowed there, and
    # the other replicas still owe them.
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    _nemesis(h, "start-crash", {"nodes": ["n3"]}, "crash")
    assert _lost_on_n3(h, targets=[]).valid is True
    recs = [header("after"), replica("after", 1, "n1", reg_cells(2, 200)), replica("after", 1, "n2", reg_cells(2, 200)),
            replica("after", 1, "n3", reg_cells(1, 100))]
    assert run(h, recs).valid is True
    recs[1] = replica("after", 1, "n1", reg_cells(1, 100))
    assert run(h, recs).valid is False
