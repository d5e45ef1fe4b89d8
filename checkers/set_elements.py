"""Linearizability of a set history per element: each element is its own object.

A store that keeps a set as one cell per element (Cassandra's collections, ringlab's ``set``
workload) promises each cell's linearizability at QUORUM, not that a read of the whole set is a
snapshot: a QUORUM read merges replicas that answered at different instants, so it can show an
element added after another one finished while lacking that other one. Linearizability is
compositional over objects (Herlihy and Wing), so judging every element on its own is exactly
the guarantee; ``params['atomic_reads']`` asks for the whole-set search instead
(checkers/linearizable.py), for stores that promise snapshot reads.

Per element the check is closed-form, in history positions (a strict total order, so ties in
virtual time cannot blur it). The element takes effect at one point ``t`` inside its first add's
interval (``info`` adds: any time after the invocation, or never); every ok read showing it must
take effect after ``t`` and every ok read lacking it before ``t``. Such points exist iff

    max(first add invoked, latest invocation of a read lacking it)
        < min(first add completed, earliest completion of a read showing it)

An element read but never added (or only added by adds that failed) is illegal in every state.
Cost: one pass over the reads in invocation order and one in completion order, with set
differences doing the elements consecutive reads share, then O(1) per element.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.models import freeze
from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from checkers.linearizable import pairs
from harness.history import HistoryError, Op

INF = float("inf")


class _Read:
    """One ok read: where it was invoked and completed, and the elements it showed."""

    __slots__ = ("inv", "comp", "inv_pos", "comp_pos", "elements")

    def __init__(self, inv: Op, comp: Op, inv_pos: int, comp_pos: int, elements: frozenset[Any]) -> None:
        self.inv, self.comp, self.inv_pos, self.comp_pos, self.elements = inv, comp, inv_pos, comp_pos, elements


class _Add:
    """An element's adds: the earliest invocation and completion among those that did not fail."""

    __slots__ = ("inv", "comp", "inv_pos", "comp_pos")

    def __init__(self, inv: Op, comp: Op | None, inv_pos: int, comp_pos: float) -> None:
        self.inv, self.comp, self.inv_pos, self.comp_pos = inv, comp, inv_pos, comp_pos


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge every element of every set as its own linearizable object."""
    params = params or {}
    adds, failed_only, reads, counts = _collect(history)
    log = AnomalyLog(example_limit(params))
    elements = 0
    for key in sorted(set(adds) | set(reads), key=repr):
        elements += _check_key(key, adds.get(key, {}), failed_only.get(key, {}), reads.get(key, []), log)
    counts.update(keys=len(set(adds) | set(reads)), elements=elements,
                  **{k.replace("-", "_"): v for k, v in sorted(log.counts.items())})
    details = {"model": "set", "per": "element",
               "note": "each element is its own object (a set stored one cell per element); "
                       "a whole-set read need not be a snapshot (atomic-reads asks for that)"}
    return Result("linearizable", not log.counts, counts, log.examples, details)


def _collect(history: Iterable[Op]) -> tuple[dict[Any, dict[Any, _Add]], dict[Any, dict[Any, Op]],
                                               dict[Any, list[_Read]], dict[str, int]]:
    """Pair invocations with completions; per key the elements' adds and the ok reads."""
    adds: dict[Any, dict[Any, _Add]] = {}
    failed_only: dict[Any, dict[Any, Op]] = {}
    reads: dict[Any, list[_Read]] = {}
    counts = {"ops": 0, "ok": 0, "info": 0, "fail": 0, "nemesis": 0}

    def add(key: Any, inv: Op, inv_pos: int, comp: Op | None, comp_pos: float) -> None:
        e = freeze(inv.value)
        per = adds.setdefault(key, {})
        a = per.get(e)
        if a is None:
            per[e] = _Add(inv, comp, inv_pos, comp_pos)
            return
        # The element shows from its earliest effect: in [min invocation, min completion].
        if inv_pos < a.inv_pos:
            a.inv, a.inv_pos = inv, inv_pos
        if comp_pos < a.comp_pos:
            a.comp, a.comp_pos = comp, comp_pos

    for inv, inv_pos, op, pos in pairs(history, counts):
        key = freeze(inv.key)
        if op is None:
            if inv.f == "add":
                add(key, inv, inv_pos, None, INF)
            continue
        if inv.f == "add":
            if op.type == "fail":
                failed_only.setdefault(key, {}).setdefault(freeze(inv.value), op)
            else:
                add(key, inv, inv_pos, op if op.type == "ok" else None, pos if op.type == "ok" else INF)
        elif inv.f == "read":
            if op.type != "ok":
                continue
            v = op.value if op.value is not None else []
            if not isinstance(v, list | tuple):
                raise HistoryError(f"op {op.index}: a set read must return a list, got {v!r}")
            try:
                shown = frozenset(v)
            except TypeError:
                shown = frozenset(freeze(x) for x in v)
            reads.setdefault(key, []).append(_Read(inv, op, inv_pos, int(pos), shown))
        else:
            raise HistoryError(f"op {inv.index}: unknown operation f={inv.f!r} for the set model (expected add/read)")
    return adds, failed_only, reads, counts


def _check_key(key: Any, adds: dict[Any, _Add], failed: dict[Any, Op], rs: list[_Read], log: AnomalyLog) -> int:
    """Judge one set's elements; returns how many elements it has."""
    # The latest-invoked read lacking each element: reads in invocation order, and for each
    # element the start of its last unbroken run of reads showing it.
    by_inv = sorted(rs, key=lambda r: r.inv_pos)
    run_start: dict[Any, int] = {}
    prev: frozenset[Any] = frozenset()
    for k, r in enumerate(by_inv):
        back = r.elements - prev
        if back:
            run_start.update(dict.fromkeys(back, k))
        prev = r.elements
    m = len(by_inv)
    tail = by_inv[-1].elements if by_inv else frozenset()

    def latest_lacking(e: Any) -> _Read | None:
        k = run_start[e] - 1 if e in tail else m - 1
        return by_inv[k] if k >= 0 else None

    # The earliest-completed read showing each element: reads in completion order, first sighting.
    first_shown: dict[Any, _Read] = {}
    seen: set[Any] = set()
    for r in sorted(rs, key=lambda r: r.comp_pos):
        new = r.elements - seen
        if new:
            first_shown.update(dict.fromkeys(new, r))
            seen |= new
    for e, a in adds.items():
        lacking = latest_lacking(e)
        shown = first_shown.get(e)
        lo = max(a.inv_pos, lacking.inv_pos if lacking is not None else -1)
        hi = min(a.comp_pos, shown.comp_pos if shown is not None else INF)
        if lo < hi:
            continue
        log.add(_explain(key, e, a, lacking, shown))
    for e in seen - adds.keys():
        r = first_shown[e]
        f = failed.get(e)
        why = (f"whose add failed (op {f.index})" if f is not None else "which was never added")
        log.add(Anomaly("not-linearizable", f"key {key!r}: read op {r.comp.index} returned {e!r}, {why}",
                        [r.inv, r.comp] + ([f] if f is not None else []), key, {"element": e}))
    return len(adds)


def _explain(key: Any, e: Any, a: _Add, lacking: _Read | None, shown: _Read | None) -> Anomaly:
    """Why no point fits element ``e``: the two operations whose order contradicts."""
    if lacking is not None and shown is not None and lacking.inv_pos > shown.comp_pos:
        why = (f"read op {lacking.comp.index}, invoked after read op {shown.comp.index} had shown {e!r}, lacks it "
               "(the element vanished)")
        ops = [shown.inv, shown.comp, lacking.inv, lacking.comp]
    elif lacking is not None and a.comp is not None and lacking.inv_pos > a.comp_pos:
        why = (f"read op {lacking.comp.index}, invoked after the add of {e!r} was acknowledged "
               f"(op {a.comp.index}), lacks it (a stale read)")
        ops = [a.inv, a.comp, lacking.inv, lacking.comp]
    else:
        assert shown is not None
        why = (f"read op {shown.comp.index} returned {e!r} before its add was invoked (op {a.inv.index})")
        ops = [shown.inv, shown.comp, a.inv] + ([a.comp] if a.comp is not None else [])
    return Anomaly("not-linearizable", f"key {key!r}: element {e!r}: {why}", [o for o in ops if o is not None],
                   key, {"element": e})
