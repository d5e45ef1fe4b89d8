"""The checks that look inside the cluster, on hand-made records: gossip versions (checkers/gossip.py),
replicas after a full repair (checkers/convergence.py with --final-repair), replicas the moment a
ring changes during a membership step (checkers/movement.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers import convergence, gossip, movement
from harness.history import Op
from harness.liveness_probe import gossip_disagreements
from tests.unit.test_check_convergence import SET, H, header, replica, set_cells

# ---- gossip


def _g(node: str, t: int, states: dict[str, list[Any]], final: bool = False) -> dict[str, Any]:
    return {"type": "gossip", "node": node, "sent_ns": t, "recv_ns": t + 1, "states": states,
            **({"final": True} if final else {})}


def _state(gen: int, beat: int, status: int, load: int = 1) -> list[Any]:
    return [gen, beat, {"STATUS": status, "TOKENS": 2, "LOAD": load}]


def _gossip(records: list[dict[str, Any]]) -> Any:
    return gossip.check([], {"gossip_samples": records})


def test_versions_that_only_move_forward_and_views_that_agree_are_valid() -> None:
    recs = [_g("n1", 1, {"n1": _state(10, 5, 3), "n2": _state(20, 4, 3)}),
            _g("n1", 2, {"n1": _state(10, 9, 3), "n2": _state(20, 8, 6)}),
            # n2 restarted: a new generation restarts its versions
            _g("n1", 3, {"n1": _state(10, 12, 3), "n2": _state(21, 2, 1)}),
            _g("n1", 4, {"n1": _state(10, 15, 3), "n2": _state(21, 5, 1, load=4)}, final=True),
            _g("n2", 4, {"n1": _state(10, 14, 3, load=9), "n2": _state(21, 6, 1)}, final=True)]
    r = _gossip(recs)
    assert r.valid is True, r.anomalies
    assert r.counts["compared"] > 0 and r.counts["final_views"] == 2


def test_an_application_state_that_goes_back_is_flagged() -> None:
    recs = [_g("n1", 1, {"n1": _state(10, 5, 3), "n2": _state(20, 9, 8)}),
            _g("n1", 2, {"n1": _state(10, 7, 3), "n2": _state(20, 11, 6)})]
    r = _gossip(recs)
    assert r.valid is False
    a = r.anomalies[0]
    assert (a.kind, a.details["endpoint"], a.details["key"]) == ("gossip-version-regressed", "n2", "STATUS")


def test_a_restarted_observer_learns_anew_and_is_not_flagged() -> None:
    recs = [_g("n1", 1, {"n1": _state(10, 5, 3), "n2": _state(20, 9, 8)}),
            _g("n1", 2, {"n1": _state(11, 1, 1), "n2": _state(20, 4, 3)})]
    assert _gossip(recs).valid is True


def test_final_views_that_disagree_on_a_membership_state_are_flagged_but_not_on_load() -> None:
    recs = [_g("n1", 4, {"n3": _state(30, 9, 7, load=1)}, final=True),
            _g("n2", 4, {"n3": _state(30, 9, 5, load=2)}, final=True)]
    r = _gossip(recs)
    assert [(a.kind, a.details["key"]) for a in r.anomalies] == [("gossip-views-diverged", "STATUS")]
    assert gossip_disagreements({n: rec["states"] for n, rec in zip(("n1", "n2"), recs)})[0][:2] == ("n3", "STATUS")
    recs[1]["states"]["n3"] = _state(30, 9, 7, load=2)
    assert _gossip(recs).valid is True
    assert gossip_disagreements({n: rec["states"] for n, rec in zip(("n1", "n2"), recs)}) == []


# ---- full repair


def _repaired(n3_elements: tuple[int, ...], skipped: list[str] | None = None) -> Any:
    h = H()
    h.add(7, 1, 101)
    h.add(7, 2, 102)
    h.op(1, "invoke", "add", 7, 3)
    h.op(1, "info", "add", 7, 3)  # timed out: maybe applied
    full = {n: {"ranges": 4, "skipped_replicas": skipped if n == "n1" and skipped else []} for n in ("n1", "n2", "n3")}
    recs = [header("before", SET, read_repair="NONE", hints_held={"before": {}, "after": {}, "targets": ["n3"]}),
            *(replica("before", 7, n, set_cells(1, 2)) for n in ("n1", "n2")), replica("before", 7, "n3", set_cells(1)),
            header("after", SET, read_repair="NONE", full_repair=full, full_repair_hints_drained=True),
            # element 3: an add that timed out (never acknowledged), held by two replicas only
            *(replica("after", 7, n, set_cells(1, 2, 3)) for n in ("n1", "n2")),
            replica("after", 7, "n3", set_cells(*n3_elements))]
    return convergence.check(h.ops, {"model": "set", "replica_snapshots": recs})


def test_replicas_that_hold_the_same_cells_after_a_full_repair_are_valid() -> None:
    r = _repaired((1, 2, 3))
    assert r.valid is True, r.anomalies
    assert r.counts["after_full_repair_judged"] == 1


def test_a_replica_repair_left_behind_is_flagged_even_for_an_element_never_acknowledged() -> None:
    r = _repaired((1, 2))
    assert r.valid is False
    assert {a.kind for a in r.anomalies} == {"diverged-after-repair"}
    assert "full anti-entropy repair" in r.anomalies[0].explanation
    # A repair that skipped a replica promises no agreement (the acknowledged elements are there).
    assert _repaired((1, 2), skipped=["n3"]).valid is True


def _killed_history(kill_s: tuple[float, float], window: float | None) -> tuple[list[Op], dict[str, Any]]:
    h = H()
    h.ops.append(Op(0, int(kill_s[0] * 1e9), "nemesis", "invoke", "start-kill", None, None))
    h.ops.append(Op(1, int(kill_s[0] * 1e9) + 5, "nemesis", "info", "start-kill", None, {"nodes": ["n3"]}))
    h.t = int(kill_s[0] * 1e9) + 100
    h.add(7, 1, 101)
    h.ops.append(Op(len(h.ops), int(kill_s[1] * 1e9), "nemesis", "invoke", "stop-kill", None, None))
    h.ops.append(Op(len(h.ops), int(kill_s[1] * 1e9) + 5, "nemesis", "info", "stop-kill", None, {"nodes": ["n3"]}))
    recs = [header("before", SET, read_repair="NONE", hints_held={"before": {}, "after": {}, "targets": []}),
            *(replica("before", 7, n, set_cells(1)) for n in ("n1", "n2")), replica("before", 7, "n3", set_cells())]
    params = {"model": "set", "replica_snapshots": recs, **({"max_hint_window": window} if window is not None else {})}
    return h.ops, params


def test_a_write_missed_while_its_replica_was_down_past_the_hint_window_is_excused_only_then() -> None:
    ops, params = _killed_history((1.0, 15.0), window=0)
    r = convergence.check(ops, params)
    assert r.valid is not False and r.counts["replica-lost-write"] == 0, r.anomalies
    # The store's 3 hours (no window given) or an outage shorter than the window: no hint is refused.
    for window in (None, 20):
        ops, params = _killed_history((1.0, 15.0), window=window)
        assert convergence.check(ops, params).counts["replica-lost-write"] == 1


# ---- movements


def _moves(tmp: Path, n4_elements: tuple[int, ...], acked: list[str]) -> Any:
    h = H()
    h.op(1, "invoke", "add", 7, 1, cl="QUORUM")
    h.op(1, "ok", "add", 7, 1, cl="QUORUM", timestamp=101, extra={"acked": acked})
    t0 = h.t + 1000
    h.ops.append(Op(len(h.ops), t0, "nemesis", "invoke", "start-membership", None, None))
    # an add during the step: it also went to the pending replica, which this check does not model
    h.ops.append(Op(len(h.ops), t0 + 10, 1, "invoke", "add", 7, 2, cl="QUORUM"))
    h.ops.append(Op(len(h.ops), t0 + 20, 1, "ok", "add", 7, 2, cl="QUORUM", timestamp=102, extra={"acked": ["n1", "n2"]}))
    h.ops.append(Op(len(h.ops), t0 + 5000, "nemesis", "info", "start-membership", None, {"node": "n3"},
                    extra={"action": "decommission"}))
    path = tmp / "movements.jsonl"
    lines = [{"type": "movement", "movement": 1, "viewer": "n3", "step": "start-membership", "sent_ns": t0 + 100,
              "recv_ns": t0 + 100, "keys": 1, "workload": SET}]
    for node, elements in (("n1", (1,)), ("n2", (1,)), ("n4", n4_elements)):
        lines.append({"type": "replica", "movement": 1, "key": 7, "node": node, "replicas": ["n1", "n2", "n4"],
                      "cells": set_cells(*elements), "partition_tombstone": None})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return movement.check(h.ops, {"model": "set", "replication_factor": 3, **movement.params_for_run(tmp)})


def test_new_replicas_holding_what_acknowledged_it_are_valid(tmp_path: Path) -> None:
    # Three replicas took element 1, the leaving n3 among them: n4 got n3's copy before LEFT.
    r = _moves(tmp_path, (1,), acked=["n1", "n2", "n3"])
    assert r.valid is True, r.anomalies
    assert r.counts["judged_writes"] == 1  # element 2, written during the step, is not judged


def test_a_range_given_to_a_replica_before_its_data_is_flagged(tmp_path: Path) -> None:
    r = _moves(tmp_path, (), acked=["n1", "n2", "n3"])
    assert r.valid is False
    a = r.anomalies[0]
    assert (a.kind, a.details["lacking"], a.details["acknowledged"]) == ("moved-write-unheld", ["n4"], 3)
    # Two replicas took it and two of the new ones hold it: enough.
    assert _moves(tmp_path, (), acked=["n1", "n2"]).valid is True


# ---- lww-order: a delete that never completed


def test_a_delete_cut_at_the_time_limit_may_be_the_nil_a_final_read_sees() -> None:
    from checkers import lww_order

    params = {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"}
    ops = [Op(0, 10, 0, "invoke", "write", 46, 5, cl="QUORUM"),
           Op(1, 20, 0, "ok", "write", 46, 5, cl="QUORUM", timestamp=11_000_001),
           # process 1's delete: invoked, then the time limit came; no completion was recorded
           Op(2, 30, 1, "invoke", "delete", 46, None, cl="QUORUM"),
           Op(3, 40, 2, "invoke", "read", 46, None, cl="ALL"),
           Op(4, 50, 2, "ok", "read", 46, None, cl="ALL")]
    r = lww_order.check(ops, params)
    assert r.valid is True, r.anomalies
    without = [o for o in ops if o.process != 1]
    assert lww_order.check(without, params).counts["stale-version"] == 1
