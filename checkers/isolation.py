"""Row isolation of batches (Jepsen's write-isolation test for Cassandra).

Each batch sets every column of one row to one value in one mutation, which every replica
applies atomically, so a read merged from replicas by last-write-wins per cell shows one
batch's row, or nothing. A read that shows columns of two different batches (or some columns
of a batch and none of the others) is a mix:

* ``row-isolation``: the mixed cells carry distinct timestamps (or a column is missing):
  per-cell last-write-wins over atomic per-replica mutations never produces that, so it is a
  violation;
* ``equal-timestamp-mix``: every mixed cell carries the same timestamp. Two batches stamped
  with the same microsecond tie, and the tie is broken per cell (by value), so a row can keep
  some columns of each: the anomaly aphyr found in Cassandra 2.0 (2013), which its design
  allows. Counted as expected behaviour, as the quorum checker counts expected stale reads;
  it does not make the run invalid. (ringlab's store breaks ties by the greater value, the same
  for every cell of a one-value batch, so it should show neither kind; a store that breaks ties
  another way, per replica or by arrival, would show the expected one.)

A batch is recognised as ``f: batch`` with its row (``{column: value}``) as the value; a read
is ``f: read`` whose ok completion's value is the row and ``timestamps`` its cells' timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.cells import hashable_key
from checkers.result import Anomaly, AnomalyLog, Result
from harness.history import NEMESIS, Op


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Find reads that show columns of more than one batch."""
    pending: dict[Any, Op] = {}
    batches: dict[tuple[Any, Any], tuple[Op, Op | None]] = {}  # (key, value) -> (invoke, completion)
    width: dict[Any, int] = {}
    reads: list[tuple[Op, Op]] = []
    counts = {"batches": 0, "reads": 0, "consistent-reads": 0, "empty-reads": 0}
    for op in history:
        if op.process == NEMESIS:
            continue
        if op.type == "invoke":
            pending[op.process] = op
            if op.f == "batch" and isinstance(op.value, dict) and op.value:
                key = hashable_key(op.key)
                width[key] = max(width.get(key, 0), len(op.value))
                batches[(key, hashable_key(next(iter(op.value.values()))))] = (op, None)
            continue
        inv = pending.pop(op.process, None)
        if inv is None:
            continue
        if inv.f == "batch":
            if op.type != "fail":
                counts["batches"] += 1
            if isinstance(inv.value, dict) and inv.value:
                batches[(hashable_key(inv.key), hashable_key(next(iter(inv.value.values()))))] = (inv, op)
        elif inv.f == "read" and op.type == "ok":
            reads.append((inv, op))
    log = AnomalyLog()
    expected = AnomalyLog()
    for inv, comp in reads:
        counts["reads"] += 1
        row = comp.value if isinstance(comp.value, dict) else {}
        if not row:
            counts["empty-reads"] += 1
            continue
        key = hashable_key(inv.key)
        values = {hashable_key(v) for v in row.values()}
        missing = width.get(key, 0) - len(row)
        if len(values) == 1 and missing <= 0:
            counts["consistent-reads"] += 1
            continue
        stamps = comp.extra.get("timestamps") if isinstance(comp.extra.get("timestamps"), dict) else {}
        distinct = {stamps.get(c) for c in row}
        shown = ", ".join(f"{c}={row[c]!r}@{stamps.get(c)}" for c in sorted(row))
        ops: list[Op] = []
        for v in sorted(values, key=repr):
            got = batches.get((key, v))
            if got is not None:
                ops.extend(o for o in got if o is not None)
        ops.extend((inv, comp))
        if missing <= 0 and len(distinct) == 1 and None not in distinct:
            expected.add(Anomaly(
                "equal-timestamp-mix",
                f"key {inv.key!r}: read (op {comp.index}) shows columns of {len(values)} batches that carry the "
                f"same timestamp ({shown}); the per-cell tie-break of equal timestamps allows it",
                ops, inv.key, {"row": row, "timestamps": stamps}))
            continue
        why = (f"{missing} of the row's {width.get(key, 0)} columns are missing" if missing > 0 else
               f"columns of {len(values)} batches with distinct timestamps")
        log.add(Anomaly(
            "row-isolation",
            f"key {inv.key!r}: read (op {comp.index}) shows {why} ({shown}); every replica applies a batch "
            f"atomically, so a read should show one batch's row",
            ops, inv.key, {"row": row, "timestamps": stamps, "missing": max(missing, 0)}))
    counts["row-isolation"] = log.count("row-isolation")
    counts["expected-equal-timestamp-mix"] = expected.count("equal-timestamp-mix")
    details = {
        "expected": [a.to_json() for a in expected.examples[:5]],
        "note": "a mix of batches with equal timestamps is what per-cell tie-breaking allows; counted, not a violation",
    }
    return Result("isolation", not log.counts, counts, log.examples, details)
