"""The convergence checker on resurrections gc_grace explains (checkers/gcgrace.py), on hand-made
histories and snapshots: a tombstone purged after gc_grace while other replicas lost it is
expected; the same within gc_grace, or with a replica lacking it for no recorded reason, is not."""

from __future__ import annotations

from typing import Any

from checkers import convergence
from harness.history import Op

REG = {"model": "register", "column": "v"}
S = 1_000_000_000
START = 1_000.0  # test.json's history_start_time
NODES = ("n1", "n4", "n5")


class H:
    """A tiny history builder with times in nanoseconds."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def op(self, process: Any, type_: str, f: str, key: Any, value: Any, **kw: Any) -> None:
        self.t += 10_000_000
        extra = kw.pop("extra", {})
        self.ops.append(Op(len(self.ops), self.t, process, type_, f, key, value, extra=extra, **kw))

    def write(self, value: Any, ts: int) -> None:
        self.op(0, "invoke", "write", 1, value, node="n1")
        self.op(0, "ok", "write", 1, value, node="n1", timestamp=ts)

    def delete(self, ts: int) -> None:
        self.op(0, "invoke", "delete", 1, None, node="n2")
        self.op(0, "ok", "delete", 1, None, node="n2", timestamp=ts)

    def crash(self, nodes: list[str]) -> None:
        self.op("nemesis", "invoke", "start-crash", None, None)
        self.op("nemesis", "info", "start-crash", None, {"nodes": nodes, "lost_unsynced": True}, extra={"action": "crash"})

    def final_all(self, value: Any, ts: int | None) -> None:
        self.op(2, "invoke", "read", 1, None, cl="ALL", extra={"final": True})
        self.op(2, "ok", "read", 1, value, cl="ALL", timestamp=ts, extra={"final": True})


def header(label: str, t_ns: int) -> dict[str, Any]:
    return {"type": "pass", "pass": label, "read_repair": "BLOCKING", "workload": REG, "time": START + t_ns / S,
            **({"hints_drained": True} if label == "after" else {}), "hints_held": {"targets": []}}


def rec(label: str, node: str, cells: list[list[Any]]) -> dict[str, Any]:
    return {"type": "replica", "pass": label, "key": 1, "node": node, "replicas": list(NODES), "range": ["-5", "7"],
            "cells": cells, "partition_tombstone": None}


def value(v: Any, ts: int) -> list[list[Any]]:
    return [["v", v, ts, False, None]]


def scenario(wait_s: float, crashed: list[str], before_n5: list[list[Any]] | None = None,
             final: tuple[Any, int | None] = (1, 100)) -> tuple[H, list[dict[str, Any]]]:
    """Write 1, delete it (acknowledged), crash ``crashed``, wait, then the three passes: n5 (and
    every replica not crashed) holds nothing before the final read at ALL returns ``final``."""
    h = H()
    h.write(1, 100)
    h.delete(200)
    h.crash(crashed)
    h.t += int(wait_s * S)
    t_before = h.t
    h.final_all(*final)
    t_after = h.t + S
    before = [rec("before", n, value(1, 100) if n in crashed else (before_n5 or [])) for n in NODES]
    repaired = value(*final) if final[0] is not None else []
    recs = [header("before", t_before), *before,
            header("read-repair", t_after), *(rec("read-repair", n, repaired) for n in NODES),
            header("after", t_after + S), *(rec("after", n, repaired) for n in NODES)]
    return h, recs


def check(h: H, recs: list[dict[str, Any]], grace: float | None = 10) -> Any:
    params: dict[str, Any] = {"model": "register", "replica_snapshots": recs, "history_start_time": START}
    if grace is not None:
        params["gc_grace_seconds"] = grace
    return convergence.check(h.ops, params)


def test_a_tombstone_purged_after_gc_grace_while_the_others_lost_it_is_an_expected_resurrection() -> None:
    # The register/all seed-1 case: n4 and n1 lost the tombstone in a periodic crash, n5 purged it.
    r = check(*scenario(12, ["n1", "n4"]))
    assert r.valid is True, r.anomalies
    assert r.counts["before_purged"] == 1 and r.counts["expected-after-gc-grace"] == 2
    reason = r.details["expected_by_gc_grace"][0]["reason"]
    assert "gc_grace" in reason and "purged" in reason and "n5" in reason and "crashed" in reason


def test_the_same_resurrection_within_gc_grace_is_still_a_lost_write() -> None:
    r = check(*scenario(3, ["n1", "n4"]))
    assert r.valid is False
    kinds = {(a.kind, a.details["node"]) for a in r.anomalies}
    assert ("replica-lost-write", "n5") in kinds and ("diverged-after-repair", "n5") in kinds
    assert r.counts["expected-after-gc-grace"] == 0


def test_a_replica_lacking_the_tombstone_for_no_recorded_reason_keeps_the_resurrection_invalid() -> None:
    # Only n4 crashed: n1 holding the deleted value is unexplained, so n5's purge excuses nothing.
    h, recs = scenario(12, ["n4"])
    recs[1] = rec("before", "n1", value(1, 100))
    r = check(h, recs)
    assert r.valid is False
    assert any(a.kind == "diverged-after-repair" and a.details["node"] == "n5" for a in r.anomalies)


def test_without_the_runs_gc_grace_nothing_is_excused() -> None:
    r = check(*scenario(12, ["n1", "n4"]), grace=None)
    assert r.valid is False and r.counts["expected-after-gc-grace"] == 0


def test_a_replica_still_holding_the_tombstone_within_gc_grace_makes_the_resurrection_a_bug() -> None:
    r = check(*scenario(3, ["n1", "n4"], before_n5=[["v", None, 200, True, None]]))
    assert r.valid is False


def test_every_replica_holding_nothing_after_gc_grace_purged_the_delete() -> None:
    r = check(*scenario(12, [], final=(None, None)))
    assert r.valid is True, r.anomalies
    assert r.counts["before_purged"] == 3 and r.counts["after_purged"] == 3
    r = check(*scenario(3, [], final=(None, None)))
    assert r.valid is False


def test_clock_offsets_widen_the_margin() -> None:
    # 8 s after the delete with a 10 s gc_grace: too early, unless a clock was 1 s or more off.
    assert check(*scenario(8, [], final=(None, None))).valid is False
    h, recs = scenario(8, [], final=(None, None))
    h.op("nemesis", "info", "bump-clock", None, {"delta_ms": {"n5": 1500}, "offsets": {"n5": 1_500_000}})
    assert check(h, recs).valid is True


def test_params_for_run_reads_gc_grace_and_the_history_zero(tmp_path: Any) -> None:
    import json

    (tmp_path / "replicas.jsonl").write_text("")
    (tmp_path / "test.json").write_text(json.dumps({"storage": {"table": {"gc_grace_seconds": 5}},
                                                    "history_start_time": 12.5}))
    assert convergence.params_for_run(tmp_path) == {"replica_snapshots": str(tmp_path / "replicas.jsonl"),
                                                    "gc_grace_seconds": 5, "history_start_time": 12.5}
    (tmp_path / "test.json").write_text(json.dumps({"storage": {"table": {"gc_grace_seconds": 5}},
                                                    "history_start_time": 12.5, "deploy": "sim"}))
    assert "history_start_time" not in convergence.params_for_run(tmp_path)  # virtual time: no common clock


def test_a_timed_out_delete_that_took_effect_and_was_purged_explains_empty_replicas() -> None:
    # The register/all seed-1 rerun: the key's last delete timed out (info), applied everywhere,
    # and every replica purged it after gc_grace; the final read at ALL returned nil.
    def run(wait_s: float) -> Any:
        h = H()
        h.write(1, 100)
        h.op(0, "invoke", "delete", 1, None, node="n2")
        h.op(0, "info", "delete", 1, None, node="n2", error="WriteTimeout")
        h.t += int(wait_s * S)
        t_before = h.t
        h.final_all(None, None)
        recs = [header("before", t_before), *(rec("before", n, []) for n in NODES),
                header("read-repair", h.t + S), *(rec("read-repair", n, []) for n in NODES),
                header("after", h.t + 2 * S), *(rec("after", n, []) for n in NODES)]
        return check(h, recs)

    r = run(12)
    assert r.valid is True, r.anomalies
    assert r.counts["before_purged"] == 3 and r.counts["after_purged"] == 3
    assert run(3).valid is False  # within gc_grace the replicas lost the write
