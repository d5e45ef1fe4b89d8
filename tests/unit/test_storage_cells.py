"""Last-write-wins merge: convergence properties, the tie-break, digests and the wire form."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from node.storage import Cell, Mutation, Partition, RangeTombstone, reconcile

NAMES = st.sampled_from(["a", "b", "s:1", "s:2"])
TS = st.integers(0, 4)


@st.composite
def cells(draw: st.DrawFn) -> Cell:
    name, ts = draw(NAMES), draw(TS)
    kind = draw(st.sampled_from(["value", "tombstone", "ttl"]))
    if kind == "tombstone":
        return Cell(name, None, ts, None, draw(st.integers(0, 3)))
    value = draw(st.binary(max_size=2))
    if kind == "ttl":
        return Cell(name, value, ts, 10, draw(st.integers(0, 3)))
    return Cell(name, value, ts)


@st.composite
def partitions(draw: st.DrawFn) -> Partition:
    m = Mutation(b"k", draw(st.lists(cells(), max_size=5)),
                 draw(st.one_of(st.none(), TS)), 0,
                 [RangeTombstone("s:", t, 0) for t in draw(st.lists(TS, max_size=1))])
    if m.partition_tombstone is None:
        m.partition_deletion_time = None
    return m.to_partition().normalized()


@settings(max_examples=200)
@given(partitions(), partitions(), partitions())
def test_merge_is_commutative_associative_idempotent(a: Partition, b: Partition, c: Partition) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).digest() == b.merge(a).digest()


@settings(max_examples=200)
@given(cells(), cells())
def test_reconcile_is_a_total_order(x: Cell, y: Cell) -> None:
    y = Cell(x.name, y.value, y.timestamp, y.ttl, y.local_deletion_time)
    assert reconcile(x, y) == reconcile(y, x)
    assert reconcile(x, y) in (x, y)


def test_tie_break_tombstone_then_expiring_then_greater_value() -> None:
    regular_small = Cell("c", b"a", 5)
    regular_big = Cell("c", b"b", 5)
    expiring = Cell("c", b"a", 5, 10, 100)
    tombstone = Cell("c", None, 5, None, 1)
    assert reconcile(regular_small, regular_big) is regular_big
    assert reconcile(regular_big, expiring) is expiring
    assert reconcile(expiring, tombstone) is tombstone
    assert reconcile(Cell("c", None, 6, None, 1), Cell("c", b"z", 7)).value == b"z"
    # Of two expiring cells the one that expires first wins: it becomes a tombstone later anyway.
    assert reconcile(Cell("c", b"z", 5, 10, 200), Cell("c", b"a", 5, 10, 100)).local_deletion_time == 100


def test_digest_ignores_order_and_shadowed_cells_but_sees_tombstones() -> None:
    p1 = Partition(b"k", {"a": Cell("a", b"1", 1), "b": Cell("b", b"2", 2)})
    p2 = Partition(b"k", {"b": Cell("b", b"2", 2), "a": Cell("a", b"1", 1)})
    assert p1.digest() == p2.digest()
    deleted = Partition(b"k", {"b": Cell("b", b"2", 2)}, partition_tombstone=1, partition_deletion_time=9)
    with_shadowed = Partition(b"k", {"a": Cell("a", b"1", 1), "b": Cell("b", b"2", 2)}, 1, 9)
    assert deleted.digest() == with_shadowed.digest()
    assert deleted.digest() != Partition(b"k", {"b": Cell("b", b"2", 2)}).digest()


@given(partitions())
def test_wire_form_round_trips(p: Partition) -> None:
    assert Partition.deserialize(p.serialize()) == p
    assert Mutation.from_obj(Mutation(p.key, list(p.cells.values())).to_obj()).cells == list(p.cells.values())


def test_live_cells_drop_expired_and_deleted() -> None:
    p = Partition(b"k", {"a": Cell("a", b"1", 5, 10, 100), "b": Cell("b", None, 5, None, 1),
                         "s:1": Cell("s:1", b"x", 3), "c": Cell("c", b"y", 9)},
                  range_tombstones={"s:": RangeTombstone("s:", 4, 1)})
    assert list(p.live_cells(99)) == ["a", "c"]
    assert list(p.live_cells(100)) == ["c"]
