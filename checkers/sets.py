"""Jepsen's set-full: the fate of every element added to a set, from the reads that followed.

For each element: whether its add was acknowledged (``ok``) or indeterminate (``info``/never
completed), and what the reads that followed show:

* stable — present in the last reads, from some read on;
* lost — acknowledged or once seen, yet absent from every read that began after its last
  presence (or, never seen, from every read that began after its add was acknowledged);
* never-read — no read began after the add completed, so nothing can be said;
* stale — absent from a read that began after the add was acknowledged, before it first showed;
* reappeared — absent from a read that began after a read showing it had completed, then
  present again;
* unexpected — read but never added.

Stable latency is the time from the add's invocation to the start of the first read from which
every read showed the element. Lost and unexpected elements make the result invalid; stale and
reappeared ones too when ``params['set_linearizable']`` is true.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from checkers.perf import quantiles
from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from harness.history import NEMESIS, HistoryFile, Op, as_op, gc_paused, op_index

ADD_FS = frozenset({"add"})
READ_FS = frozenset({"read"})


@gc_paused
def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Classify every element added to every set and report lost and unexpected ones."""
    params = params or {}
    records = history.records() if isinstance(history, HistoryFile) else None
    adds, reads = _collect_records(records) if records is not None else _collect_ops(history)
    log = AnomalyLog(example_limit(params))
    counts = {"elements": 0, "acknowledged": 0, "indeterminate": 0, "stable": 0, "lost": 0,
              "never-read": 0, "stale": 0, "reappeared": 0, "unexpected": 0, "reads": 0}
    latencies: list[int] = []
    for key in set(adds) | set(reads):
        _check_key(key, adds.get(key, {}), reads.get(key, []), counts, log, latencies)
    strict = bool(params.get("set_linearizable"))
    valid = counts["lost"] == 0 and counts["unexpected"] == 0 and (
        not strict or (counts["stale"] == 0 and counts["reappeared"] == 0))
    details = {"stable_latency_ms": quantiles(latencies, scale=1e-6)}
    return Result("set", valid, counts, log.examples, details)


def _collect_ops(history: Iterable[Op]) -> tuple[dict[Any, dict[Any, tuple[Any, Any, int, int | None]]],
                                                 dict[Any, list[tuple[int, int, Any, Any, Any]]]]:
    """Per key: each element's (add invocation, completion or None, invoke time, ok time or None), and the ok reads as
    (invoke time, completion time, elements, invocation, completion)."""
    pending: dict[Any, Op] = {}
    adds: dict[Any, dict[Any, tuple[Any, Any, int, int | None]]] = {}
    reads: dict[Any, list[tuple[int, int, Any, Any, Any]]] = {}
    pop = pending.pop
    adds_get = adds.get
    reads_get = reads.get
    for op in history:
        p = op.process
        t = op.type
        if t == "invoke":
            if p != NEMESIS:
                pending[p] = op
            continue
        inv = pop(p, None)
        if inv is None:
            continue
        f = inv.f
        if f in ADD_FS:
            if t != "fail":
                d = adds_get(inv.key)
                if d is None:
                    d = adds[inv.key] = {}
                d[inv.value] = (inv, op, inv.time, op.time if t == "ok" else None)
        elif f in READ_FS and t == "ok":
            lst = reads_get(inv.key)
            if lst is None:
                lst = reads[inv.key] = []
            lst.append((inv.time, op.time, op.value or (), inv, op))
    for inv in pending.values():
        if inv.f in ADD_FS:
            adds.setdefault(inv.key, {})[inv.value] = (inv, None, inv.time, None)
    return adds, reads


def _collect_records(records: Iterable[dict[str, Any]]) -> tuple[dict[Any, dict[Any, tuple[Any, Any, int, int | None]]],
                                                                 dict[Any, list[tuple[int, int, Any, Any, Any]]]]:
    """:func:`_collect_ops` over line records, without an Op per line."""
    pending: dict[Any, dict[str, Any]] = {}
    adds: dict[Any, dict[Any, tuple[Any, Any, int, int | None]]] = {}
    reads: dict[Any, list[tuple[int, int, Any, Any, Any]]] = {}
    pop = pending.pop
    adds_get = adds.get
    reads_get = reads.get
    for op in records:
        p = op["process"]
        t = op["type"]
        if t == "invoke":
            if p != NEMESIS:
                pending[p] = op
            continue
        inv = pop(p, None)
        if inv is None:
            continue
        f = inv["f"]
        if f in ADD_FS:
            if t != "fail":
                key = inv.get("key")
                d = adds_get(key)
                if d is None:
                    d = adds[key] = {}
                d[inv.get("value")] = (inv, op, inv["time"], op["time"] if t == "ok" else None)
        elif f in READ_FS and t == "ok":
            key = inv.get("key")
            lst = reads_get(key)
            if lst is None:
                lst = reads[key] = []
            lst.append((inv["time"], op["time"], op.get("value") or (), inv, op))
    for inv in pending.values():
        if inv["f"] in ADD_FS:
            adds.setdefault(inv.get("key"), {})[inv.get("value")] = (inv, None, inv["time"], None)
    return adds, reads


def _ops(*ops: Any) -> list[Op]:
    """The operations behind a finding (records made Ops), without the missing ones."""
    return [as_op(o) for o in ops if o is not None]


def _check_key(key: Any, adds: dict[Any, tuple[Any, Any, int, int | None]], rs: list[tuple[int, int, Any, Any, Any]],
               counts: dict[str, int], log: AnomalyLog, latencies: list[int]) -> None:
    rs.sort(key=lambda r: r[0])
    m = len(rs)
    counts["reads"] += m
    inv_t = [r[0] for r in rs]
    comp_t = [r[1] for r in rs]
    # Element → [first read, last read, presences, start of the current run, gaps, gap read].
    stats: dict[Any, list[int]] = {}
    for k, r in enumerate(rs):
        for e in r[2]:
            st = stats.get(e)
            if st is None:
                stats[e] = [k, k, 1, k, 0, -1]
                continue
            last = st[1]
            if last != k - 1 and inv_t[k - 1] > comp_t[last]:
                # A read between began after a read that showed e had completed, and lacked e.
                st[3] = k
                st[4] += 1
                st[5] = k - 1
            st[1] = k
            st[2] += 1
    for e, (inv, comp, inv_time, ack_time) in adds.items():
        counts["elements"] += 1
        ok = ack_time is not None
        counts["acknowledged" if ok else "indeterminate"] += 1
        st = stats.get(e)
        after_ack = bisect.bisect_right(inv_t, ack_time) if ok else m
        if st is None:
            if ok and after_ack < m:
                counts["lost"] += 1
                r = rs[-1]
                log.add(Anomaly("lost", f"key {key!r}: element {e!r} was acknowledged (op {op_index(comp)}) "  # type: ignore[union-attr]
                                f"but no read showed it; the final read (op {op_index(r[4])}) lacks it",
                                _ops(inv, comp, r[3], r[4]), key))
            else:
                counts["never-read"] += 1
            continue
        first, last = st[0], st[1]
        q = bisect.bisect_right(inv_t, comp_t[last])
        if q < m:
            counts["lost"] += 1
            gone = rs[q]
            log.add(Anomaly("lost", f"key {key!r}: element {e!r} was seen by read op {op_index(rs[last][4])}, then absent "
                            f"from every read that began after it, from op {op_index(gone[4])} on",
                            _ops(inv, comp, rs[last][3], rs[last][4], gone[3], gone[4]), key))
            continue
        counts["stable"] += 1
        latencies.append(max(0, inv_t[st[3]] - inv_time))
        if after_ack < first:
            counts["stale"] += 1
            miss = rs[after_ack]
            log.add(Anomaly("stale", f"key {key!r}: element {e!r} was acknowledged (op {op_index(comp)}) but read op "  # type: ignore[union-attr]
                            f"{op_index(miss[4])}, which began afterwards, lacked it", _ops(inv, comp, miss[3], miss[4]), key))
        if st[4]:
            counts["reappeared"] += 1
            gap = rs[st[5]]
            log.add(Anomaly("reappeared", f"key {key!r}: element {e!r} vanished from read op {op_index(gap[4])} after "
                            f"being seen, then reappeared", _ops(inv, comp, gap[3], gap[4]), key))
    for e in stats:
        if e not in adds:
            counts["unexpected"] += 1
            r = rs[stats[e][0]]
            log.add(Anomaly("unexpected", f"key {key!r}: read op {op_index(r[4])} returned {e!r}, which was never added",
                            _ops(r[3], r[4]), key))
