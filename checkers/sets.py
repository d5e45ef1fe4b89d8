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
from harness.history import NEMESIS, Op

ADD_FS = frozenset({"add"})
READ_FS = frozenset({"read"})


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Classify every element added to every set and report lost and unexpected ones."""
    params = params or {}
    pending: dict[Any, Op] = {}
    adds: dict[Any, dict[Any, tuple[Op, Op | None]]] = {}
    reads: dict[Any, list[tuple[int, int, Any, Op, Op]]] = {}
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
                d[inv.value] = (inv, op)
        elif f in READ_FS and t == "ok":
            lst = reads_get(inv.key)
            if lst is None:
                lst = reads[inv.key] = []
            lst.append((inv.time, op.time, op.value or (), inv, op))
    for inv in pending.values():
        if inv.f in ADD_FS:
            adds.setdefault(inv.key, {})[inv.value] = (inv, None)
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


def _check_key(key: Any, adds: dict[Any, tuple[Op, Op | None]], rs: list[tuple[int, int, Any, Op, Op]],
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
    for e, (inv, comp) in adds.items():
        counts["elements"] += 1
        ok = comp is not None and comp.type == "ok"
        counts["acknowledged" if ok else "indeterminate"] += 1
        st = stats.get(e)
        after_ack = bisect.bisect_right(inv_t, comp.time) if ok and comp is not None else m
        if st is None:
            if ok and after_ack < m:
                counts["lost"] += 1
                r = rs[-1]
                log.add(Anomaly("lost", f"key {key!r}: element {e!r} was acknowledged (op {comp.index}) "  # type: ignore[union-attr]
                                f"but no read showed it; the final read (op {r[4].index}) lacks it",
                                [inv, comp, r[3], r[4]], key))  # type: ignore[list-item]
            else:
                counts["never-read"] += 1
            continue
        first, last = st[0], st[1]
        q = bisect.bisect_right(inv_t, comp_t[last])
        if q < m:
            counts["lost"] += 1
            gone = rs[q]
            log.add(Anomaly("lost", f"key {key!r}: element {e!r} was seen by read op {rs[last][4].index}, then absent "
                            f"from every read that began after it, from op {gone[4].index} on",
                            [o for o in (inv, comp, rs[last][3], rs[last][4], gone[3], gone[4]) if o is not None], key))
            continue
        counts["stable"] += 1
        latencies.append(max(0, inv_t[st[3]] - inv.time))
        if after_ack < first:
            counts["stale"] += 1
            miss = rs[after_ack]
            log.add(Anomaly("stale", f"key {key!r}: element {e!r} was acknowledged (op {comp.index}) but read op "  # type: ignore[union-attr]
                            f"{miss[4].index}, which began afterwards, lacked it", [inv, comp, miss[3], miss[4]], key))  # type: ignore[list-item]
        if st[4]:
            counts["reappeared"] += 1
            gap = rs[st[5]]
            log.add(Anomaly("reappeared", f"key {key!r}: element {e!r} vanished from read op {gap[4].index} after "
                            f"being seen, then reappeared", [o for o in (inv, comp, gap[3], gap[4]) if o is not None], key))
    for e in stats:
        if e not in adds:
            counts["unexpected"] += 1
            r = rs[stats[e][0]]
            log.add(Anomaly("unexpected", f"key {key!r}: read op {r[4].index} returned {e!r}, which was never added",
                            [r[3], r[4]], key))
