"""The ninth round's inside checks on hand-made records: damaged storage a node reports after a
run whose faults never damage files (checkers/convergence.py ``store-damaged``), the placement
probe's synthetic keys at the ring's wrap (harness/placement_probe.py), and replicas right after
the first node's repair of --final-repair (the ``node-repair`` pass)."""

from __future__ import annotations

from typing import Any

import pytest

from checkers import convergence, placement
from harness.placement_probe import boundary_keys
from tests.unit.test_check_convergence import SET, H, header, replica, set_cells

HEALTHY = {"corrupt": [], "verify_corrupt": [], "quarantined": [], "held": {}}


def _check(health: dict[str, Any], nemesis: str | None = "kill") -> Any:
    h = H()
    h.add(7, 1, 101)
    recs = [header("after", SET, read_repair="NONE", storage_health=health),
            *(replica("after", 7, n, set_cells(1)) for n in ("n1", "n2", "n3"))]
    params: dict[str, Any] = {"model": "set", "replica_snapshots": recs}
    if nemesis is not None:
        params["nemesis"] = nemesis
    return convergence.check(h.ops, params)


def test_healthy_storage_everywhere_is_valid_and_judged() -> None:
    r = _check({n: HEALTHY for n in ("n1", "n2", "n3")})
    assert r.valid is True, r.anomalies
    assert r.counts["storage_health_judged"] == 1 and r.counts["store-damaged"] == 0


@pytest.mark.parametrize("damage", [{"corrupt": ["/d/jepsen/sets-1/4-Data.db"]},
                                    {"verify_corrupt": ["/d/jepsen/sets-1/4-Data.db"]},
                                    {"quarantined": ["/d/corrupt/4-Data.db"]},
                                    {"held": {"jepsen.sets": "quarantined 4-Data.db"}}])
def test_a_corrupt_or_quarantined_sstable_or_a_held_table_after_kills_is_store_damaged(damage: dict[str, Any]) -> None:
    r = _check({"n1": HEALTHY, "n2": {**HEALTHY, **damage}, "n3": "OSError: refused"}, nemesis="partition,kill,flush-compact")
    assert r.valid is False
    [a] = r.anomalies
    assert (a.kind, a.details["node"]) == ("store-damaged", "n2")


@pytest.mark.parametrize("nemesis", ["corrupt", "kill,disk", "something-new", None])
def test_damage_is_not_judged_when_a_fault_may_have_caused_it_or_the_faults_are_unknown(nemesis: str | None) -> None:
    r = _check({"n1": {**HEALTHY, "corrupt": ["/d/x-Data.db"]}}, nemesis=nemesis)
    assert r.valid is True and r.counts["storage_health_judged"] == 0


def test_boundary_keys_fall_past_the_last_token_and_at_or_before_the_first() -> None:
    tokens = ["-3000000000000000000", "-5", "42", "4000000000000000000"]
    tail, head = boundary_keys("murmur3", tokens)
    assert placement.key_token("murmur3", tail) > int(tokens[-1])
    assert placement.key_token("murmur3", head) <= int(tokens[0])
    assert boundary_keys("murmur3", tokens) == [tail, head]  # the same ring, the same keys
    assert boundary_keys("murmur3", []) == []


def _node_repair(n3_elements: tuple[int, ...], result: dict[str, Any] | None = None, replicas_of_7: tuple[str, ...] = ("n1", "n2", "n3")) -> Any:
    h = H()
    h.add(7, 1, 101)
    h.op(1, "invoke", "add", 7, 2)
    h.op(1, "info", "add", 7, 2)  # timed out: on n2 only before the repair
    res = {"node": "n1", "ranges": 4, "skipped_replicas": [], "hints_drained": True, **(result or {})}
    recs = [header("node-repair", SET, read_repair="NONE", node_repair=res),
            *(dict(replica("node-repair", 7, n, set_cells(1, 2)), replicas=list(replicas_of_7)) for n in ("n1", "n2")),
            dict(replica("node-repair", 7, "n3", set_cells(*n3_elements)), replicas=list(replicas_of_7)),
            header("after", SET, read_repair="NONE"),
            *(replica("after", 7, n, set_cells(1, 2)) for n in ("n1", "n2", "n3"))]
    return convergence.check(h.ops, {"model": "set", "replica_snapshots": recs, "nemesis": "kill"})


def test_replicas_that_agree_right_after_the_first_node_repair_are_valid() -> None:
    r = _node_repair((1, 2))
    assert r.valid is True, r.anomalies
    assert r.counts["node_repair_judged"] == 1 and r.counts["node_repair_keys"] == 1


def test_a_replica_the_first_node_repair_left_behind_is_flagged() -> None:
    r = _node_repair((1,))
    assert r.valid is False
    [a] = r.anomalies
    assert a.kind == "diverged-after-repair" and a.details["pass"] == "node-repair" and "n3 lacks 1" in a.explanation


@pytest.mark.parametrize("result", [{"skipped_replicas": ["n3"]}, {"error": "RequestTimeout"}, {"hints_drained": False}])
def test_a_node_repair_that_skipped_a_replica_failed_or_followed_undelivered_hints_is_not_judged(result: dict[str, Any]) -> None:
    r = _node_repair((1,), result)
    assert r.valid is True and r.counts["node_repair_judged"] == 0


def test_keys_the_repaired_node_does_not_replicate_are_not_judged() -> None:
    r = _node_repair((1,), replicas_of_7=("n2", "n3", "n4"))
    assert r.valid is True and r.counts["node_repair_keys"] == 0


ROW = {"model": "row", "columns": ["c0", "c1", "c2", "c3"]}


def _rows(n3: dict[str, Any], final_all: bool = True) -> Any:
    h = H()
    h.write(3, {"c0": 1}, 100)
    h.op(3, "invoke", "delete", 3, None)
    h.op(3, "ok", "delete", 3, None, timestamp=200)
    if final_all:
        h.op(2, "invoke", "read", 3, None, cl="ALL", extra={"final": True})
        h.op(2, "ok", "read", 3, {}, cl="ALL", extra={"final": True, "timestamps": {}})
    deleted = {"cells": [["c0", 1, 100, False, None]], "partition_tombstone": 200}
    recs = [header("read-repair", ROW),
            *(dict(replica("read-repair", 3, n, None), **deleted) for n in ("n1", "n2")),
            dict(replica("read-repair", 3, "n3", None), **n3), header("after", ROW)]
    return convergence.check(h.ops, {"model": "row", "replica_snapshots": recs})


def test_row_replicas_that_agree_on_live_cells_after_the_final_all_read_are_valid() -> None:
    # n3 was compacted: the row delete dropped the cell it shadows; the live cells are the same
    r = _rows({"cells": [], "partition_tombstone": 200})
    assert r.valid is True, r.anomalies


def test_a_row_replica_read_repair_left_without_the_row_delete_is_flagged() -> None:
    r = _rows({"cells": [["c0", 1, 100, False, None]], "partition_tombstone": None})
    assert r.valid is False
    assert {a.kind for a in r.anomalies} == {"diverged-after-repair"}
    assert "live cell" in r.anomalies[0].explanation
    # Without a final read at ALL nothing had to make them agree: not judged.
    assert _rows({"cells": [["c0", 1, 100, False, None]], "partition_tombstone": None}, final_all=False).valid is True
