"""Last-write-wins anomalies, found from the write timestamps the store assigned.

* lost write: an acknowledged write that no read beginning after it completed could see: no
  read that ended after it began returned its value or a value with a greater timestamp, and
  at least one read (the final reads included) began after it completed;
* same-coordinator inversion: a write that began after another write *through the same node*
  had completed, yet carries a smaller timestamp. A coordinator stamps max(now, last + 1), so a
  correct store never does this, whatever its clocks do (unless the node restarted in between:
  a restarted node has forgotten its last timestamp; counted as ``inversion-across-restart``);
* timestamp inversion: the same across coordinators: a write that began after another write to
  the key had completed, through another node, yet carries a smaller timestamp, so
  last-write-wins silently discarded it. That is what clock skew does: in a run with clock
  faults it is what LWW allows, counted as ``expected-timestamp-inversion`` (and the writes it
  discarded as ``discarded-by-inversion``, not as lost writes); without clock faults it is an
  anomaly;
* timestamp collision: two writes to a key with the same timestamp and different values, one of
  which had completed before the other began (the store's tie-break may keep the earlier one and
  silently drop the later). Two *concurrent* writes that tie are not an anomaly: either order is
  a valid one, and the tie-break picks the same winner on every replica; they are counted as
  ``concurrent-timestamp-tie`` and the loser is not reported as a lost write. Ties beyond
  chance are: ``timestamp-tie`` when there are more than :func:`tie_budget` allows for the
  run's write rate at the store's microsecond resolution;
* phantom read: a read of a value no write to that key had been invoked with before it ended.

Deletes (``f: delete``) are writes of nil: their timestamp is the tombstone's. A read of nil
carries no timestamp (the store returns nothing for a deleted cell), so it is credited with the
greatest timestamp of any delete invoked before it ended (+infinity if such a delete's outcome,
and so its timestamp, is unknown): the most it could have seen, so it never makes a write look
lost that a delete superseded.

One pass collects small per-key records; the analysis is O(n log n) per key.
"""

from __future__ import annotations

import bisect
import math
from itertools import accumulate
from operator import itemgetter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from harness.history import NEMESIS, Op, gc_paused, numbered

# The store's documented timestamp resolution: microseconds (node/server.py _write_timestamp).
TIMESTAMP_RESOLUTION_US = 1.0
# Concurrent ties allowed beyond chance: TIE_SLACK times the expected count, plus TIE_FLOOR (a
# store stamping in milliseconds instead of microseconds ties about a thousand times as often).
TIE_SLACK = 10
TIE_FLOOR = 2
READ_FS = frozenset({"read", "get"})
WRITE_FS = frozenset({"write", "put", "cas", "delete"})
DELETE_F = "delete"
_INF = float("inf")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def collect(history: Iterable[Op], nemesis: list[Op] | None = None
            ) -> tuple[dict[Any, list[tuple[Any, ...]]], dict[Any, list[tuple[Any, ...]]], dict[str, int]]:
    """One pass: per key, writes (inv_time, comp_time, ts, value, ok, inv, comp, node, cl) and
    reads (inv_time, comp_time, ts, value, inv, comp, cl); keys that see appends are left out.
    Nemesis operations go to ``nemesis`` when a list is given. ``inv``/``comp`` are the
    operations' handles (``harness.history.numbered``: positions, or Ops for a one-shot stream;
    :func:`collect_numbered` also gives their Ops); ``node`` is the write's coordinator, ``cl``
    the completion's consistency level."""
    return collect_numbered(history, nemesis)[:3]


def collect_numbered(history: Iterable[Op], nemesis: list[Op] | None = None
                     ) -> tuple[dict[Any, list[tuple[Any, ...]]], dict[Any, list[tuple[Any, ...]]], dict[str, int],
                                Callable[[Any], Op]]:
    """:func:`collect`, and the Op of an operation's handle (a HistoryFile is streamed and the
    few operations that findings name are read again: records are not kept)."""
    pairs, op_at = numbered(history)
    return (*_collect_ops(pairs, nemesis), op_at)


def _collect_ops(history: Iterable[tuple[Any, Op]], nemesis: list[Op] | None
                 ) -> tuple[dict[Any, list[tuple[Any, ...]]], dict[Any, list[tuple[Any, ...]]], dict[str, int]]:
    # Per process: the pending invocation's (record, handle); its fields are read when it
    # completes (one pair allocated per invocation, and a read's value never read).
    pending: dict[Any, tuple[Any, Any]] = {}
    # One list each, grouped per key afterwards: appending to one of many per-key lists while
    # lines are decoded misses the cache (as in checkers/sets.py).
    written: list[tuple[Any, tuple[Any, ...]]] = []
    read: list[tuple[Any, tuple[Any, ...]]] = []
    counts = {"writes": 0, "reads": 0, "writes_without_timestamp": 0, "keys_with_appends": 0}
    appended: set[Any] = set()
    scalar = (int, str, type(None))
    wrote = written.append
    got = read.append
    pop = pending.pop
    for pos, op in history:  # (handle, operation): see harness.history.numbered
        p = op.process
        if p.__class__ is not int and p == NEMESIS:
            if nemesis is not None:
                nemesis.append(op)
            continue
        t = op.type
        if t == "invoke":
            pending[p] = (op, pos)
            continue
        started = pop(p, None)
        if started is None:
            continue
        inv, ipos = started
        f, key = inv.f, inv.key
        if type(key) not in scalar:
            key = _hashable(key)
        if f in WRITE_FS:
            if t == "fail":
                continue
            ok = t == "ok"
            v = inv.value
            ts = op.timestamp
            if ts is None and ok:
                counts["writes_without_timestamp"] += 1
            if f == "cas":
                if not isinstance(v, list) or len(v) != 2:
                    continue
                v = v[1]  # a compare-and-set writes its new value
            elif f == DELETE_F:
                v = None  # a delete writes nil (a tombstone); its value field names nothing kept
            if type(v) not in scalar:
                v = _hashable(v)
            wrote((key, (inv.time, op.time if ok else None, ts, v, ok, ipos, pos, inv.node, op.cl)))
        elif f in READ_FS:
            if t != "ok":
                continue
            v = op.value
            if type(v) not in scalar:
                v = _hashable(v)
            got((key, (inv.time, op.time, op.timestamp, v, ipos, pos, op.cl)))
        elif f == "append":
            appended.add(key)
    never = [(inv.f, inv.key, inv.value, inv.time, inv.node, ipos) for inv, ipos in pending.values()]
    return _finish_collect(group_by_key(written), group_by_key(read), counts, appended, never)


def group_by_key(items: Iterable[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    """Per key (in the order keys first appear), its items in order."""
    out: dict[Any, list[Any]] = {}
    get = out.get
    for key, item in items:
        lst = get(key)
        if lst is None:
            out[key] = [item]
        else:
            lst.append(item)
    return out


def _finish_collect(writes: dict[Any, list[tuple[Any, ...]]], reads: dict[Any, list[tuple[Any, ...]]],
                    counts: dict[str, int], appended: set[Any], never: list[tuple[Any, ...]]
                    ) -> tuple[dict[Any, list[tuple[Any, ...]]], dict[Any, list[tuple[Any, ...]]], dict[str, int]]:
    """Counts, the invocations never completed (``never``: f, key, value, time, node, handle),
    and keys with appends dropped."""
    counts["writes"] = sum(len(v) for v in writes.values())
    counts["reads"] = sum(len(v) for v in reads.values())
    for f, key, v, inv_t, node, inv in never:  # never completed: an indeterminate write, no timestamp
        if f in WRITE_FS:
            if f == "cas":
                if not isinstance(v, list) or len(v) != 2:
                    continue
                v = v[1]
            elif f == DELETE_F:
                v = None
            counts["writes"] += 1
            writes.setdefault(_hashable(key), []).append((inv_t, None, None, _hashable(v), False, inv, None, node, None))
        elif f == "append":
            appended.add(_hashable(key))
    # A key that is appended to holds a list, not one last-written value: LWW says nothing there.
    for k in appended:
        writes.pop(k, None)
        reads.pop(k, None)
    counts["keys_with_appends"] = len(appended)
    return writes, reads, counts


class NilReads:
    """The timestamp a read of nil is credited with: the greatest of the deletes invoked before
    it ended (+infinity when one of them has no known timestamp), or -1 when none was."""

    def __init__(self, ws: list[tuple[Any, ...]]) -> None:
        dels = sorted(((w[0], w[2] if w[2] is not None else float("inf")) for w in ws if w[3] is None),
                      key=lambda d: d[0])
        self.invokes = [d[0] for d in dels]
        self.top: list[float] = []
        best: float = -1
        for _, ts in dels:
            best = max(best, ts)
            self.top.append(best)

    def ts(self, comp_t: float) -> float:
        """The most a read of nil that completed at ``comp_t`` can have seen."""
        i = bisect.bisect_left(self.invokes, comp_t)
        return self.top[i - 1] if i else -1


def _overlap(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two writes were concurrent (neither completed before the other was invoked)."""
    a_end = a[1] if a[1] is not None else float("inf")
    b_end = b[1] if b[1] is not None else float("inf")
    return a[0] < b_end and b[0] < a_end


def _ops(op_at: Callable[[Any], Op], *handles: Any) -> list[Op]:
    """The operations behind a finding, by their handles, without the missing ones."""
    return [op_at(h) for h in handles if h is not None]


def _fault_context(nemesis: list[Op]) -> tuple[bool, dict[str, list[tuple[int, int]]]]:
    """Whether the run had clock faults, and per node the windows in which it was killed or
    restarted (a restarted node forgets the last timestamp it assigned)."""
    clock = False
    restarts: dict[str, list[tuple[int, int]]] = {}
    started: dict[str, int] = {}
    for op in nemesis:
        if op.f in ("start-clock", "stop-clock"):
            clock = True
        if op.type == "invoke":
            started[op.f] = op.time
            continue
        v = op.value if isinstance(op.value, dict) else {}
        nodes: list[str] = []
        if op.f in ("start-kill", "stop-kill") or "membership" in op.f:
            nodes = [n for n in v.get("nodes", []) if isinstance(n, str)]
            if isinstance(v.get("node"), str):
                nodes.append(v["node"])
        for n in nodes:
            restarts.setdefault(n, []).append((started.get(op.f, op.time), op.time))
    return clock, restarts


def tie_budget(ws_by_key: dict[Any, list[tuple[Any, ...]]], resolution_us: float = TIMESTAMP_RESOLUTION_US) -> tuple[float, int]:
    """The expected number of concurrent timestamp ties, and the budget beyond which they are an
    anomaly. Writes to a key at N per span T (µs) tie by chance about N²·q/(2T) times for a clock
    resolution q; the budget is TIE_SLACK times that, plus TIE_FLOOR."""
    expected = 0.0
    for ws in ws_by_key.values():
        expected += _expected_ties(ws, resolution_us)
    return expected, TIE_FLOOR + math.ceil(TIE_SLACK * expected)


def _expected_ties(ws: list[tuple[Any, ...]], resolution_us: float) -> float:
    """One key's share of :func:`tie_budget`'s expected ties."""
    stamped = [w[0] for w in ws if w[2] is not None]  # their invocation times
    if len(stamped) < 2:
        return 0.0
    span_us = max((max(stamped) - min(stamped)) / 1000.0, resolution_us)
    return len(stamped) ** 2 * resolution_us / (2 * span_us)


@gc_paused
def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Find lost writes, timestamp inversions (same-coordinator ones always; cross-node ones
    unless the run had clock faults), timestamp collisions, tie-budget overruns and phantom reads."""
    params = params or {}
    nemesis: list[Op] = []
    writes, reads, counts, at = collect_numbered(history, nemesis)
    clock_faults, restarts = _fault_context(nemesis)
    clock_faults = bool(params.get("clock_faults", clock_faults))
    log = AnomalyLog(example_limit(params))
    ties = {"concurrent-timestamp-tie": 0, "expected-timestamp-inversion": 0, "discarded-by-inversion": 0,
            "inversion-across-restart": 0}
    tied_examples: list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]] = []
    ctx = _KeyContext(at, clock_faults, restarts, ties, tied_examples)
    resolution = float(params.get("timestamp_resolution_us") or TIMESTAMP_RESOLUTION_US)
    keys = set(writes) | set(reads)
    n_keys = len(keys)
    # Each key's records are dropped once judged, while they are still in the cache (freeing a
    # million tuples at the end cost a tenth of the check); tie_budget's sum keeps its order.
    key_ties: dict[Any, float] = dict.fromkeys(writes, 0.0)
    for key in keys:
        ws = writes.pop(key, [])
        share = _check_key(key, ws, reads.pop(key, []), log, ctx, resolution)
        if ws:
            key_ties[key] = share
        del ws
    if params.get("_inverted_keys_out") is not None:
        params["_inverted_keys_out"].update(ctx.inverted_keys)
    expected_ties = 0.0
    for share in key_ties.values():
        expected_ties += share
    budget = TIE_FLOOR + math.ceil(TIE_SLACK * expected_ties)
    if ties["concurrent-timestamp-tie"] > budget:
        key, a, b = tied_examples[0]
        log.add(Anomaly(
            "timestamp-tie",
            f"{ties['concurrent-timestamp-tie']} pairs of concurrent writes carry equal timestamps, more than the budget "
            f"of {budget} for this run's write rate at a {TIMESTAMP_RESOLUTION_US:g} µs clock resolution (about "
            f"{expected_ties:.3g} expected by chance): the store stamps coarser than it should; e.g. key {key!r}: "
            f"{a[3]!r} (op {at(a[5]).index}) and {b[3]!r} (op {at(b[5]).index}) at {a[2]}",
            _ops(at, a[5], a[6], b[5], b[6]), key, {"ties": ties["concurrent-timestamp-tie"], "budget": budget,
                                                    "expected": round(expected_ties, 6)}))
    counts = dict(counts)
    counts.update(ties)
    counts["keys"] = n_keys
    counts["timestamp-tie-budget"] = budget
    for kind in ("lost-write", "timestamp-inversion", "same-coordinator-inversion", "timestamp-collision",
                 "timestamp-tie", "phantom-read"):
        counts[kind] = log.count(kind)
    valid = not any(log.counts.values())
    details: dict[str, Any] = {"clock_faults": clock_faults}
    if counts["writes_without_timestamp"]:
        details["note"] = (f"{counts['writes_without_timestamp']} acknowledged writes carry no timestamp; "
                           "timestamp checks skip them")
    if ties["expected-timestamp-inversion"]:
        details["expected"] = [a.to_json() for a in ctx.expected.examples[:5]]
        details["expected_note"] = (f"{ties['expected-timestamp-inversion']} writes through one node got a smaller timestamp "
                               "than a write through another node that had completed before they began, and "
                               f"{ties['discarded-by-inversion']} of them were discarded: what last-write-wins allows "
                               "when clocks are skewed (the run had clock faults)")
    return Result("lww", valid, counts, log.examples, details)


def clock_inverted_keys(history: Iterable[Op]) -> set[Any]:
    """The keys where clock faults gave a write a smaller timestamp than a write through another
    node that completed before it began: real-time order means nothing there under LWW."""
    out: set[Any] = set()
    check(history, {"_inverted_keys_out": out})
    return out


@dataclass
class _KeyContext:
    """What every key's analysis shares: the operations by handle, the run's faults and the
    counters of expected findings."""

    op_at: Callable[[Any], Op]
    clock_faults: bool
    restarts: dict[str, list[tuple[int, int]]]
    counts: dict[str, int]
    tied: list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]]
    inverted_keys: set[Any] = field(default_factory=set)
    # Examples of the inversions LWW allows under clock faults, for the report's expected findings.
    expected: AnomalyLog = field(default_factory=lambda: AnomalyLog(5))

    def restarted_between(self, node: str | None, t0: int, t1: int) -> bool:
        """Whether ``node`` was killed or restarted between times t0 and t1."""
        return any(a <= t1 and b >= t0 for a, b in self.restarts.get(node or "", ()))


def _check_key(key: Any, ws: list[tuple[Any, ...]], rs: list[tuple[Any, ...]], log: AnomalyLog,
               ctx: _KeyContext, resolution_us: float = TIMESTAMP_RESOLUTION_US) -> float:
    """Judge one key; returns its share of the expected concurrent ties (:func:`_expected_ties`)."""
    ties = ctx.counts
    at = ctx.op_at
    # Value → greatest timestamp written with it (and that write's completion), first invocation.
    value_ts: dict[Any, int] = {}
    value_comp: dict[Any, float] = {}
    first_invoke: dict[Any, int] = {}
    by_ts: dict[int, tuple[Any, ...]] = {}
    tied: set[Any] = set()  # values of writes in a concurrent tie: the loser was superseded
    first_get = first_invoke.get
    for w in ws:
        inv_t, c, ts, v = w[0], w[1], w[2], w[3]
        fi = first_get(v)
        if fi is None or inv_t < fi:
            first_invoke[v] = inv_t
        if ts is not None:
            if value_ts.get(v, -1) < ts:
                value_ts[v] = ts
                value_comp[v] = c if c is not None else _INF
            other = by_ts.get(ts)
            if other is None:
                by_ts[ts] = w
            elif other[3] != v and _overlap(other, w):
                ties["concurrent-timestamp-tie"] += 1
                tied.update((other[3], v))
                if len(ctx.tied) < 1:
                    ctx.tied.append((key, other, w))
            elif other[3] != v:
                log.add_lazy("timestamp-collision", lambda: Anomaly(
                    "timestamp-collision",
                    f"key {key!r}: writes of {other[3]!r} (op {at(other[5]).index}) and {v!r} (op {at(w[5]).index}) "
                    f"both carry timestamp {ts}; last-write-wins keeps only one of them",
                    _ops(at, other[5], other[6], w[5], w[6]), key, {"timestamp": ts}))
    # Phantom reads, and each read's timestamp (its own, or that of the write of its value).
    read_ts: list[tuple[int, int, int, tuple[Any, ...]]] = []  # (comp_time, ts, inv_time, read)
    nil = NilReads(ws)
    comp_get = value_comp.get
    for r in rs:
        inv_t, comp_t, ts, v = r[0], r[1], r[2], r[3]
        if v is not None and ((fi := first_get(v)) is None or fi > comp_t):
            log.add_lazy("phantom-read", lambda: Anomaly(
                "phantom-read",
                f"key {key!r}: read (op {at(r[5]).index}) returned {v!r}, which no write to this key had been "
                f"invoked with before the read ended",
                _ops(at, r[4], r[5]), key))
            continue
        if v is None:
            read_ts.append((comp_t, nil.ts(comp_t), inv_t, r))
            continue
        if ts is None:
            ts = value_ts.get(v, -1)
        # A read can only vouch for writes that began before both it and its value's write ended:
        # a value written before a write began cannot legitimately supersede that write.
        vc = comp_get(v, _INF)
        read_ts.append((vc if vc < comp_t else comp_t, ts, inv_t, r))
    # Timestamp inversions: sweep writes by invocation, keeping the greatest timestamp of the
    # acknowledged writes completed before it, over all coordinators and per coordinator.
    acked = sorted([w for w in ws if w[4] and w[2] is not None], key=_SECOND)
    ordered = sorted([w for w in ws if w[2] is not None], key=_FIRST)
    # _expected_ties from the stamped writes at hand: sorted by invocation, so their first and
    # last invocation times are the least and the greatest.
    ties_share = 0.0
    if len(ordered) >= 2:
        span_us = max((ordered[-1][0] - ordered[0][0]) / 1000.0, resolution_us)
        ties_share = len(ordered) ** 2 * resolution_us / (2 * span_us)
    n_acked = len(acked)
    j = 0
    top: tuple[Any, ...] | None = None
    top_by_node: dict[str, tuple[Any, ...]] = {}
    inverted: set[int] = set()  # ids of writes discarded in a way LWW allows (expected inversions)
    for w in ordered:
        while j < n_acked and acked[j][1] < w[0]:
            a = acked[j]
            if top is None or a[2] > top[2]:
                top = a
            node = a[7]
            if node is not None and (node not in top_by_node or a[2] > top_by_node[node][2]):
                top_by_node[node] = a
            j += 1
        node = w[7]
        mine = top_by_node.get(node) if node is not None else None
        if mine is not None and w[2] < mine[2]:
            if not ctx.restarted_between(node, mine[1], w[0]):
                log.add_lazy("same-coordinator-inversion", lambda: Anomaly(
                    "same-coordinator-inversion",
                    f"key {key!r}: write of {w[3]!r} (op {at(w[5]).index}) through {node} began after the write of "
                    f"{mine[3]!r} (op {at(mine[5]).index}) through the same node completed, but carries the smaller "
                    f"timestamp {w[2]} < {mine[2]}: a coordinator must stamp its writes in increasing order",
                    _ops(at, mine[5], mine[6], w[5], w[6]), key,
                    {"node": node, "earlier_ts": mine[2], "later_ts": w[2]}))
                continue
            ties["inversion-across-restart"] += 1
            inverted.add(id(w))
            continue
        if top is not None and w[2] < top[2]:
            if ctx.clock_faults:
                ties["expected-timestamp-inversion"] += 1
                inverted.add(id(w))
                ctx.inverted_keys.add(key)
                ctx.expected.add_lazy("timestamp-inversion", lambda: Anomaly(
                    "timestamp-inversion",
                    f"key {key!r}: write of {w[3]!r} (op {at(w[5]).index}) began after the write of {top[3]!r} "
                    f"(op {at(top[5]).index}) through another node completed, but carries the smaller timestamp "
                    f"{w[2]} < {top[2]}: skewed clocks, which last-write-wins resolves by timestamp",
                    _ops(at, top[5], top[6], w[5], w[6]), key, {"earlier_ts": top[2], "later_ts": w[2]}))
                continue
            log.add_lazy("timestamp-inversion", lambda: Anomaly(
                "timestamp-inversion",
                f"key {key!r}: write of {w[3]!r} (op {at(w[5]).index}) began after the write of {top[3]!r} "
                f"(op {at(top[5]).index}) completed, but carries the smaller timestamp {w[2]} < {top[2]}: "
                f"last-write-wins silently discarded it",
                _ops(at, top[5], top[6], w[5], w[6]), key, {"earlier_ts": top[2], "later_ts": w[2]}))
    # Lost writes: suffix maximum of read timestamps by read completion time.
    read_ts.sort(key=_FIRST)
    comps = [x[0] for x in read_ts]
    # suffix_max[i]: the greatest timestamp of read_ts[i:] (-1 past the end).
    suffix_max = list(accumulate(reversed([x[1] for x in read_ts]), max, initial=-1))
    suffix_max.reverse()
    last_invoke = max((x[2] for x in read_ts), default=None)
    final = max(read_ts, key=lambda x: x[2])[3] if read_ts else None
    values_read = {x[3][3] for x in read_ts}
    for w in ws:
        if not w[4] or w[2] is None or last_invoke is None or last_invoke <= w[1]:
            continue  # not acknowledged, no timestamp, or no read began after it completed
        if w[3] is not None and w[3] in values_read:
            continue  # seen (a delete's nil is not unique: the reads' timestamps decide for it)
        i = bisect.bisect_right(comps, w[0])
        if suffix_max[i] > w[2] or ((w[3] in tied or w[3] is None) and suffix_max[i] == w[2]):
            # (A read of nil is credited with exactly the newest delete it could have seen.)
            continue  # superseded by a newer (or concurrently tied) write that was seen
        if id(w) in inverted:
            ties["discarded-by-inversion"] += 1
            continue  # an expected inversion: LWW kept the earlier write with the greater timestamp
        fr = final
        what = "delete" if w[3] is None else f"write of {w[3]!r}"
        log.add_lazy("lost-write", lambda: Anomaly(
            "lost-write",
            f"key {key!r}: acknowledged {what} (op {at(w[5]).index}, timestamp {w[2]}) was never seen: "
            f"no read returned it or a value with a greater timestamp written after it began; the final read "
            f"(op {at(fr[5]).index}) returned {'nil' if fr[3] is None else repr(fr[3])}",
            _ops(at, w[5], w[6], fr[4], fr[5]), key, {"timestamp": w[2]}))
    return ties_share
