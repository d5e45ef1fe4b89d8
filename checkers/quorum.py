"""Quorum guarantees from the test's consistency levels and replication factor.

* stale read: when R + W > N, a read that begins after a write completed must return that
  write or one with a greater timestamp (the read and write replica sets intersect);
* non-monotonic read: once a completed read returned a value, a read that begins afterwards
  must not return an older one, given blocking read repair — the first read wrote its value back
  to the R replicas it contacted, so this holds when R_first + R_second > N.

* resurrection: a read returned a value older (by timestamp) than a delete that had been
  acknowledged, and whose nil a completed read had already observed, before the read began: the
  deleted value came back (Cassandra's zombie, e.g. a tombstone purged before it reached every
  replica). A violation when the delete's and the read's levels overlap (W + R > N); such a read
  is reported as a resurrection, not also as a stale read.

When the levels do not overlap (R + W <= N) the same findings are counted as expected
behaviour, not as violations. Per-operation ``cl`` fields override the test's levels. A read of
nil is credited with the newest delete it could have seen (``checkers.lww.NilReads``) when it
could be stale, and with nothing when it is the earlier read of a monotonic pair.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from checkers.lww import NilReads, _ops, collect_numbered
from checkers.models import show_value
from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from harness.history import Op, gc_paused

_FIRST, _SECOND = itemgetter(0), itemgetter(1)
# Examples kept per expected kind in details (the counts cover the rest).
EXPECTED_EXAMPLES = 5

# Consistency levels that need a fixed number of replicas, whatever the replication factor.
_FIXED = {"ANY": 0, "ONE": 1, "LOCAL_ONE": 1, "TWO": 2, "THREE": 3}
# Levels that need a majority; with one datacenter the LOCAL/EACH variants and the serial
# levels (Paxos over a quorum) all mean the same count.
_MAJORITY = {"QUORUM", "LOCAL_QUORUM", "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL"}


def acked_note(write: Op) -> str:
    """Which replicas acknowledged ``write`` before its coordinator answered, when the client
    recorded it (history fields ``replicas`` and ``acked``)."""
    replicas, acked = write.extra.get("replicas"), write.extra.get("acked")
    if not isinstance(replicas, list) or not isinstance(acked, list):
        return ""
    return (f"; the write was acknowledged by {', '.join(map(str, acked)) or 'no replica'} of replicas "
            f"{', '.join(map(str, replicas))} when {write.node or 'its coordinator'} answered")


def replicas_for(cl: str, rf: int) -> int:
    """How many replicas a consistency level waits for, with replication factor ``rf``."""
    name = str(cl).upper()
    if name in _FIXED:
        return min(_FIXED[name], rf)
    if name in _MAJORITY:
        return rf // 2 + 1
    if name == "ALL":
        return rf
    raise ValueError(f"unknown consistency level {cl!r}; expected one of "
                     f"{', '.join([*_FIXED, *sorted(_MAJORITY), 'ALL'])}")


@gc_paused
def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Find stale and non-monotonic reads; violations only where the levels promise overlap."""
    params = params or {}
    rf = params.get("replication_factor")
    if rf is None:
        raise ValueError("the quorum checker needs params['replication_factor']")
    rf = int(rf)
    default_r = replicas_for(params.get("read_cl") or "ONE", rf)
    default_w = replicas_for(params.get("write_cl") or "ONE", rf)
    writes, reads, counts, at = collect_numbered(history)
    log = AnomalyLog(example_limit(params))
    expected = AnomalyLog()
    # Each key's records are dropped once judged, while still in the cache (as in lww.check).
    for key in list(reads):
        _check_key(key, writes.pop(key, []), reads.pop(key), rf, default_r, default_w, log, expected, at)
    counts = dict(counts)
    counts.update({
        "stale-read": log.count("stale-read"),
        "non-monotonic-read": log.count("non-monotonic-read"),
        "expected-stale-read": expected.count("stale-read"),
        "expected-non-monotonic-read": expected.count("non-monotonic-read"),
        "resurrection": log.count("resurrection"),
        "expected-resurrection": expected.count("resurrection"),
    })
    details = {
        "replication_factor": rf,
        "read_replicas": default_r,
        "write_replicas": default_w,
        "overlapping": default_r + default_w > rf,
        # A few examples of each expected kind, so a resurrection is not hidden behind stale reads.
        "expected": [a.to_json() for kind in sorted(expected.counts)
                     for a in [e for e in expected.examples if e.kind == kind][:EXPECTED_EXAMPLES]],
        "note": ("R + W > N: reads must see every write completed before they began"
                 if default_r + default_w > rf else
                 "R + W <= N: stale reads are expected behaviour and reported, not counted as violations"),
    }
    return Result("quorum", not log.counts, counts, log.examples, details)


def _check_key(key: Any, ws: list[tuple[Any, ...]], rs: list[tuple[Any, ...]], rf: int, dr: int, dw: int,
               log: AnomalyLog, expected: AnomalyLog, at: Callable[[Any], Op]) -> None:
    value_ts: dict[Any, int] = {}
    for w in ws:
        if w[2] is not None and value_ts.get(w[3], -1) < w[2]:
            value_ts[w[3]] = w[2]
    # Acknowledged writes with timestamps, by completion time, grouped by how many replicas
    # acknowledged them (so a read knows which writes it must intersect).
    acked = sorted([w for w in ws if w[4] and w[2] is not None], key=_SECOND)
    acked_levels = [dw if w[8] is None else replicas_for(w[8], rf) for w in acked]
    # Per write level: completion times and the running maximum (ts, write) up to each.
    prefix: dict[int, tuple[list[int], list[tuple[int, tuple[Any, ...]]]]] = {}
    for lv in sorted(set(acked_levels)):
        times: list[int] = []
        best: list[tuple[int, tuple[Any, ...]]] = []
        top: tuple[int, tuple[Any, ...]] | None = None
        for w, wl in zip(acked, acked_levels):
            if wl != lv:
                continue
            if top is None or w[2] > top[0]:
                top = (w[2], w)
            times.append(w[1])
            best.append(top)
        prefix[lv] = (times, best)
    nil = NilReads(ws)
    rts = []
    for r in rs:
        ts = r[2]
        if r[3] is None:
            ts = nil.ts(r[1])
        elif ts is None:
            if r[3] not in value_ts:
                continue  # a value never written: the LWW checker reports it
            ts = value_ts[r[3]]
        rts.append((r[0], r[1], ts, dr if r[6] is None else replicas_for(r[6], rf), r))
    resurrected = _resurrections(key, acked, rts, rf, dw, log, expected, at)
    # Stale reads.
    for inv_t, _comp_t, ts, rl, r in rts:
        if id(r) in resurrected:
            continue
        for lv, (times, best) in prefix.items():
            i = bisect.bisect_left(times, inv_t)
            if i == 0:
                continue
            need_ts, w = best[i - 1]
            if ts < need_ts:
                strong = rl + lv > rf
                (log if strong else expected).add_lazy("stale-read", lambda: Anomaly(
                    "stale-read",
                    f"key {key!r}: read (op {at(r[5]).index}, {rl} replicas) began after the write of {show_value(w[3])} "
                    f"(op {at(w[5]).index}, {lv} replicas, timestamp {need_ts}) completed, but returned "
                    f"{show_value(r[3])} (timestamp {ts if ts >= 0 else 'nil'})" + acked_note(at(w[6]))
                    + ("" if strong else f"; expected with R + W = {rl + lv} <= N = {rf}"),
                    _ops(at, w[5], w[6], r[4], r[5]), key, {"read_ts": ts, "write_ts": need_ts, "r": rl, "w": lv}))
    # Monotonic reads: sweep reads by invocation over completed reads by completion.
    by_comp = sorted(rts, key=_SECOND)
    by_inv = sorted(rts, key=_FIRST)
    tops: dict[int, tuple[int, Any]] = {}  # read level → (greatest ts returned, that read)
    j = 0
    for inv_t, _c, ts, rl, r in by_inv:
        while j < len(by_comp) and by_comp[j][1] < inv_t:
            _i, _cc, pts, plv, pr = by_comp[j]
            if pr[3] is None:
                pts = -1  # what a read of nil saw is unknown: as the earlier read it promises nothing
            if plv not in tops or pts > tops[plv][0]:
                tops[plv] = (pts, pr)
            j += 1
        for plv, (pts, pr) in tops.items():
            if ts < pts:
                strong = plv + rl > rf
                (log if strong else expected).add_lazy("non-monotonic-read", lambda: Anomaly(
                    "non-monotonic-read",
                    f"key {key!r}: read (op {at(r[5]).index}) returned {show_value(r[3])} (timestamp {ts}) after an earlier "
                    f"completed read (op {at(pr[5]).index}) had returned the newer {show_value(pr[3])} (timestamp {pts})",
                    _ops(at, pr[4], pr[5], r[4], r[5]), key, {"r_first": plv, "r_second": rl}))
                break


def _resurrections(key: Any, acked: list[tuple[Any, ...]], rts: list[tuple[Any, ...]], rf: int, dw: int,
                   log: AnomalyLog, expected: AnomalyLog, at: Callable[[Any], Op]) -> set[int]:
    """Reads of a value older than an acknowledged, observed delete; returns the ids of their tuples.

    A delete is observed once a read of nil that began after it completed has ended; from then
    on (per delete level) the greatest observed delete timestamp is what a read must not go below.
    """
    deletes = [w for w in acked if w[3] is None]
    if not deletes:
        return set()
    # Reads of nil by invocation, with the earliest-ending one at or after each position.
    nils = sorted((x for x in rts if x[4][3] is None), key=lambda x: x[0])
    nil_invs = [x[0] for x in nils]
    first_end: list[tuple[float, Any]] = [(float("inf"), None)] * (len(nils) + 1)
    for i in range(len(nils) - 1, -1, -1):
        first_end[i] = min(first_end[i + 1], (nils[i][1], nils[i]), key=lambda e: e[0])
    # Per delete level: (when it was observed, delete, witness) by observation time, with a
    # running maximum of the delete timestamp.
    groups: dict[int, tuple[list[float], list[tuple[Any, ...]]]] = {}
    by_level: dict[int, list[tuple[float, tuple[Any, ...], Any]]] = {}
    for d in deletes:
        end, witness = first_end[bisect.bisect_right(nil_invs, d[1])]
        if witness is not None:
            by_level.setdefault(_level(d[8], rf, dw), []).append((end, d, witness))
    for lv, obs in by_level.items():
        obs.sort(key=lambda o: o[0])
        top: list[tuple[Any, ...]] = []
        for o in obs:
            top.append(o if not top or o[1][2] > top[-1][1][2] else top[-1])
        groups[lv] = ([o[0] for o in obs], top)
    found: set[int] = set()
    for inv_t, _c, ts, rl, r in rts:
        if r[3] is None:
            continue
        for lv in sorted(groups, reverse=True):  # the overlapping (strong) levels first
            ends, top = groups[lv]
            j = bisect.bisect_left(ends, inv_t)
            if not j or top[j - 1][1][2] <= ts:
                continue
            _end, d, seen = top[j - 1]
            strong = lv + rl > rf
            (log if strong else expected).add_lazy("resurrection", lambda: Anomaly(
                "resurrection",
                f"key {key!r}: the delete (op {at(d[5]).index}, {lv} replicas, timestamp {d[2]}) was acknowledged and "
                f"a read (op {at(seen[4][5]).index}) saw nil after it, yet a later read (op {at(r[5]).index}, "
                f"{rl} replicas) returned the deleted value {show_value(r[3])} (timestamp {ts})"
                + ("" if strong else f"; expected with R + W = {rl + lv} <= N = {rf}"),
                _ops(at, d[5], d[6], seen[4][4], seen[4][5], r[4], r[5]), key,
                {"delete_ts": d[2], "read_ts": ts, "r": rl, "w": lv}))
            found.add(id(r))
            break
    return found


def _level(cl: str | None, rf: int, default: int) -> int:
    return default if cl is None else replicas_for(cl, rf)
