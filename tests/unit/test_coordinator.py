"""Consistency level arithmetic (pure) and the read-repair helpers."""

from __future__ import annotations

import pytest

from node.coordinator import ConsistencyTracker, live_row, partition_to_mutation
from node.protocol import InvalidRequest
from node.ring import NetworkTopologyStrategy, SimpleStrategy
from node.storage.cells import Cell, Partition

DCS = {"a1": "dc1", "a2": "dc1", "a3": "dc1", "b1": "dc2", "b2": "dc2", "b3": "dc2"}


def _t(level: str, replicas=("a1", "a2", "a3"), strategy=SimpleStrategy(3), **kw) -> ConsistencyTracker:
    return ConsistencyTracker.for_replicas(level, replicas, strategy, DCS.__getitem__, "dc1", **kw)


@pytest.mark.parametrize(
    ("level", "required"), [("ONE", 1), ("ANY", 1), ("TWO", 2), ("THREE", 3), ("QUORUM", 2), ("ALL", 3), ("LOCAL_ONE", 1), ("LOCAL_QUORUM", 2), ("EACH_QUORUM", 2)]
)
def test_simple_strategy_requirements(level: str, required: int) -> None:
    t = _t(level)
    assert t.required == required
    assert t.available(["a1", "a2", "a3"])
    assert t.available(["a1", "a2", "a3"][:required])
    assert not t.available(["a1", "a2", "a3"][: required - 1])
    for node in ["a1", "a2", "a3"][:required]:
        assert not t.satisfied()
        t.add(node)
    assert t.satisfied() and t.received == required


def test_duplicate_acks_count_once_and_strangers_not_at_all() -> None:
    t = _t("QUORUM")
    t.add("a1")
    t.add("a1")
    t.add("zz")
    assert not t.satisfied() and t.received == 1


def test_network_topology_levels() -> None:
    nts = NetworkTopologyStrategy.of({"dc1": 3, "dc2": 3})
    reps = tuple(DCS)
    quorum = _t("QUORUM", reps, nts)
    assert quorum.required == 4
    local = _t("LOCAL_QUORUM", reps, nts)
    assert local.required == 2
    assert not local.available(["b1", "b2", "b3", "a1"])
    assert local.available(["a1", "a3"])
    each = _t("EACH_QUORUM", reps, nts)
    assert each.required == 4
    for n in ("a1", "a2", "b1"):
        each.add(n)
    assert not each.satisfied()
    each.add("b3")
    assert each.satisfied()
    local_one = _t("LOCAL_ONE", reps, nts)
    local_one.add("b1")
    assert not local_one.satisfied()
    assert local_one.useful("a2") and not local_one.useful("b2")


def test_fault_switch_acks_quorum_after_one() -> None:
    assert _t("QUORUM", quorum_after_one=True).required == 1
    assert _t("ALL", quorum_after_one=True).required == 3


def test_unknown_level() -> None:
    with pytest.raises(InvalidRequest):
        _t("MOST")


def test_live_row_and_repair_mutation() -> None:
    p = Partition(b"k", {"b": Cell("b", b"2", 10), "a": Cell("a", b"1", 5), "c": Cell("c", None, 7, None, 1)})
    assert [c.name for c in live_row(p, 100, "name", None)] == ["a", "b"]
    assert [c.name for c in live_row(p, 100, "time", 1)] == ["b"]
    assert live_row(None, 100, "name", None) == []
    m = partition_to_mutation(p)
    assert m.to_partition().digest() == p.digest()
