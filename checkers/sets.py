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
from harness.history import NEMESIS, HistoryFile, Op, as_op, gc_paused

ADD_FS = frozenset({"add"})
READ_FS = frozenset({"read"})


@gc_paused
def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Classify every element added to every set and report lost and unexpected ones."""
    params = params or {}
    records = history.records() if isinstance(history, HistoryFile) else None
    adds, reads = _collect_ops(records if records is not None else history)
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
    # Per element: the first and the last read showing it, and for one that vanished and came back
    # [start of the current run, gaps, the read of the last gap] (a run starts at the first read).
    first: dict[Any, int] = {}
    last: dict[Any, int] = {}
    gaps: dict[Any, list[int]] = {}
    prev: set[Any] = set()  # the elements of the read before (those whose last read is k - 1)
    for k, r in enumerate(rs):
        vals = r[2]
        cur = set(vals)
        if len(cur) == len(vals):
            # Set operations do the elements shown again by consecutive reads, most of them.
            back = cur - prev
            if back:
                for e in [e for e in vals if e in back] if len(back) < len(cur) else vals:
                    seen = last.get(e)
                    if seen is None:
                        first[e] = k
                    elif inv_t[k - 1] > comp_t[seen]:
                        # A read between began after a read that showed e had completed, and lacked e.
                        _gap(gaps, e, k)
            last.update(dict.fromkeys(vals, k))
        else:  # an element listed twice: one at a time, as it comes
            for e in vals:
                seen = last.get(e)
                if seen is None:
                    first[e] = last[e] = k
                    continue
                if seen != k - 1 and inv_t[k - 1] > comp_t[seen]:
                    _gap(gaps, e, k)
                last[e] = k
        prev = cur
    # Counted in locals: this loop runs once per element.
    acknowledged = stable = 0
    bisect_right = bisect.bisect_right
    first_get, gaps_get, add_latency = first.get, gaps.get, latencies.append
    for e, (inv, comp, inv_time, ack_time) in adds.items():
        ok = ack_time is not None
        f_read = first_get(e)
        if ok:
            acknowledged += 1
            after_ack = bisect_right(inv_t, ack_time)
        else:
            after_ack = m
        if f_read is None:
            if ok and after_ack < m:
                counts["lost"] += 1
                r = rs[-1]
                log.add(Anomaly("lost", f"key {key!r}: element {e!r} was acknowledged (op {comp.index}) "  # type: ignore[union-attr]
                                f"but no read showed it; the final read (op {r[4].index}) lacks it",
                                _ops(inv, comp, r[3], r[4]), key))
            else:
                counts["never-read"] += 1
            continue
        l_read = last[e]
        q = bisect_right(inv_t, comp_t[l_read])
        if q < m:
            counts["lost"] += 1
            gone = rs[q]
            log.add(Anomaly("lost", f"key {key!r}: element {e!r} was seen by read op {rs[l_read][4].index}, then absent "
                            f"from every read that began after it, from op {gone[4].index} on",
                            _ops(inv, comp, rs[l_read][3], rs[l_read][4], gone[3], gone[4]), key))
            continue
        stable += 1
        g = gaps_get(e)
        latency = inv_t[f_read if g is None else g[0]] - inv_time
        add_latency(latency if latency > 0 else 0)
        if after_ack < f_read:
            counts["stale"] += 1
            miss = rs[after_ack]
            log.add(Anomaly("stale", f"key {key!r}: element {e!r} was acknowledged (op {comp.index}) but read op "  # type: ignore[union-attr]
                            f"{miss[4].index}, which began afterwards, lacked it", _ops(inv, comp, miss[3], miss[4]), key))
        if g is not None:
            counts["reappeared"] += 1
            gap = rs[g[2]]
            log.add(Anomaly("reappeared", f"key {key!r}: element {e!r} vanished from read op {gap[4].index} after "
                            f"being seen, then reappeared", _ops(inv, comp, gap[3], gap[4]), key))
    counts["elements"] += len(adds)
    counts["acknowledged"] += acknowledged
    counts["indeterminate"] += len(adds) - acknowledged
    counts["stable"] += stable
    for e, f_read in first.items():
        if e not in adds:
            counts["unexpected"] += 1
            r = rs[f_read]
            log.add(Anomaly("unexpected", f"key {key!r}: read op {r[4].index} returned {e!r}, which was never added",
                            _ops(r[3], r[4]), key))


def _gap(gaps: dict[Any, list[int]], e: Any, k: int) -> None:
    """Element ``e`` shows again in read ``k`` after a gap: a new run starts there."""
    g = gaps.get(e)
    if g is None:
        gaps[e] = [k, 1, k - 1]
    else:
        g[0], g[1], g[2] = k, g[1] + 1, k - 1
