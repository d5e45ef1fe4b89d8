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
reappeared ones too when ``params['set_linearizable']`` is true. Otherwise a history in which no
element is stable (no add at all, or no read after the adds: every element never-read) is
``unknown``, as in Jepsen's set-full: nothing about the set was observed.
"""

from __future__ import annotations

import bisect
from operator import itemgetter
from collections.abc import Callable, Iterable
from typing import Any

from checkers.lww import group_by_key
from checkers.perf import quantiles
from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from harness.history import NEMESIS, Op, gc_paused, numbered

_FIRST, _SECOND, _ACK = itemgetter(0), itemgetter(1), itemgetter(4)


@gc_paused
def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Classify every element added to every set and report lost and unexpected ones."""
    params = params or {}
    pairs, at = numbered(history)
    adds, reads = _collect_ops(pairs)
    log = AnomalyLog(example_limit(params))
    counts = {"elements": 0, "acknowledged": 0, "indeterminate": 0, "stable": 0, "lost": 0,
              "never-read": 0, "stale": 0, "reappeared": 0, "unexpected": 0, "reads": 0}
    counts["reads"] = sum(map(len, reads.values()))
    latencies: list[int] = []
    # Each key's records are dropped once judged, while still in the cache (as in lww.check).
    # Keys in the order the history first names them (a set's order moved with the hash seed,
    # and with it which examples a run kept).
    for key in list(dict.fromkeys([*adds, *reads])):
        _check_key(key, adds.pop(key, []), reads.pop(key, []), counts, log, latencies, at)
    strict = bool(params.get("set_linearizable"))
    valid = counts["lost"] == 0 and counts["unexpected"] == 0 and (
        not strict or (counts["stale"] == 0 and counts["reappeared"] == 0))
    # Latencies were kept unclipped: clipping at 0 commutes with sorting, so a quantile at or
    # below 0 is the 0 it would have been.
    q = quantiles(latencies, scale=1e-6)
    details: dict[str, Any] = {"stable_latency_ms": {k: v if v > 0 else 0.0 for k, v in q.items()}}
    verdict: bool | str = valid
    if valid and counts["stable"] == 0:
        verdict = "unknown"
        details["reason"] = (f"no element was read stably ({counts['elements']} added, {counts['never-read']} "
                             f"never read after their add, {counts['reads']} ok reads): the set was not observed")
    return Result("set", verdict, counts, log.examples, details)


_Add = tuple[Any, int, int | None, int, int | None]


def _collect_ops(history: Iterable[tuple[Any, Op]]) -> tuple[dict[Any, list[_Add]], dict[Any, list[tuple[int, int, Any, Any, Any]]]]:
    """Per key: the adds that did not fail as (element, invocation, completion or None, invoke time, ok time or
    None), and the ok reads as (invoke time, completion time, elements, invocation, completion); operations by
    their handles (harness.history.numbered)."""
    # Per process: the pending invocation's (record, handle): its fields are read only when it
    # completes (a read's value never), and one pair is all that is allocated for it.
    pending: dict[Any, tuple[Any, Any]] = {}
    # One list each, grouped per key afterwards: appending to one of thousands of per-key lists
    # while lines are decoded missed the cache (a third of the pass on 20,000 keys). Keys and
    # items go to parallel lists: a (key, item) pair per operation was allocated and freed again.
    add_keys: list[Any] = []
    added: list[_Add] = []
    read_keys: list[Any] = []
    read: list[tuple[int, int, Any, Any, Any]] = []
    pop = pending.pop
    add, add_key = added.append, add_keys.append
    got, got_key = read.append, read_keys.append
    for pos, op in history:  # (handle, operation): see harness.history.numbered
        t = op.type
        if t == "invoke":
            p = op.process
            if p.__class__ is int or p != NEMESIS:
                pending[p] = (op, pos)
            continue
        started = pop(op.process, None)
        if started is None:
            continue
        inv, ipos = started
        f = inv.f
        # f is a str (or an EDN keyword, a str too): == with a constant needs no hash of a new string.
        if f == "add":
            if t != "fail":
                add_key(inv.key)
                add((inv.value, ipos, pos, inv.time, op.time if t == "ok" else None))
        elif t == "ok" and f == "read":
            got_key(inv.key)
            got((inv.time, op.time, op.value or (), ipos, pos))
    for inv, ipos in pending.values():
        if inv.f == "add":
            add_key(inv.key)
            add((inv.value, ipos, None, inv.time, None))
    return group_by_key(zip(add_keys, added)), group_by_key(zip(read_keys, read))


def _ops(at: Callable[[Any], Op], *handles: Any) -> list[Op]:
    """The operations behind a finding, by their handles, without the missing ones."""
    return [at(h) for h in handles if h is not None]


def _check_key(key: Any, adds: list[_Add], rs: list[tuple[int, int, Any, Any, Any]],
               counts: dict[str, int], log: AnomalyLog, latencies: list[int], at: Callable[[Any], Op]) -> None:
    added = set(map(_FIRST, adds))
    if len(added) < len(adds):
        # An element added more than once: its last add counts, in the place of its first.
        once: dict[Any, _Add] = {}
        for a in adds:
            once[a[0]] = a
        adds = list(once.values())
    rs.sort(key=_FIRST)
    m = len(rs)
    inv_t = list(map(_FIRST, rs))
    comp_t = list(map(_SECOND, rs))
    # Per element: the first read showing it; for one that vanished, the last read showing it
    # before it did (``left``: its last read is k - 1 while it is in ``prev``, else left[e]); and for
    # one that vanished and came back [start of the current run, gaps, the read of the last gap]
    # (a run starts at the first read). Set operations do the elements that consecutive reads
    # share, nearly all of them.
    first: dict[Any, int] = {}
    left: dict[Any, int] = {}
    gaps: dict[Any, list[int]] = {}
    prev: set[Any] = set()  # the elements of the read before
    for k, r in enumerate(rs):
        vals = r[2]
        cur = set(vals)
        back = cur - prev if prev else cur
        if len(cur) - len(back) < len(prev):  # fewer shared than prev holds: some vanished
            left.update(dict.fromkeys(prev - cur, k - 1))
        if len(cur) == len(vals):
            if not back:
                pass
            elif not left or back.isdisjoint(left):
                # All first shown here (nearly every element): no look-up in ``left`` each, and
                # no pass over the read. ``first`` then holds them in the set's order, not the
                # read's; _unexpected restores it.
                for e in back:
                    first[e] = k
            else:
                for e in [e for e in vals if e in back] if len(back) < len(cur) else vals:
                    seen = left.get(e)  # (not in prev: seen before means it vanished since)
                    if seen is None:
                        first[e] = k
                    elif inv_t[k - 1] > comp_t[seen]:
                        # A read between began after a read that showed e had completed, and lacked e.
                        _gap(gaps, e, k)
        else:  # an element listed twice: one at a time, as it comes
            here: dict[Any, int] = {}
            for e in vals:
                seen = here.get(e)
                if seen is None:
                    seen = k - 1 if e in prev else left.get(e)
                    if seen is None:
                        first[e] = here[e] = k
                        continue
                here[e] = k
                if seen != k - 1 and inv_t[k - 1] > comp_t[seen]:
                    _gap(gaps, e, k)
        prev = cur
    # Counted in locals: this loop runs once per element. inv_t is sorted, so "a read began after
    # time x" is a comparison with the last (or the f-th) invocation, no search: bisect_right(inv_t, x) < f
    # exactly when x < inv_t[f - 1]. Findings are logged by helpers: a lambda here would make every
    # loop variable a cell.
    never = 0
    first_get, add_latency = first.get, latencies.append
    stable_before = len(latencies)
    last_inv = inv_t[-1] if m else None
    # An element of the last read with no gap is stable, unless that read completed before it began.
    shown = prev if m and not comp_t[-1] < last_inv else ()
    for a in adds:
        e, _, _, inv_time, ack_time = a
        f_read = first_get(e)
        if f_read is None:
            if ack_time is not None and m and ack_time < last_inv:
                _lost_unread(counts, log, key, a, rs[-1], at)
            else:
                never += 1
            continue
        if e in shown and e not in gaps:
            # Latencies are clipped at 0 when summarized (check): clipping commutes with sorting.
            add_latency(inv_t[f_read] - inv_time)
            if ack_time is not None and f_read and ack_time < inv_t[f_read - 1]:
                _stale(counts, log, key, a, rs, inv_t, at)
            continue
        l_read = m - 1 if e in prev else left[e]
        if comp_t[l_read] < last_inv:
            _lost_seen(counts, log, key, a, rs, l_read, rs[bisect.bisect_right(inv_t, comp_t[l_read])], at)
            continue
        g = gaps.get(e)
        add_latency(inv_t[f_read if g is None else g[0]] - inv_time)
        if ack_time is not None and f_read and ack_time < inv_t[f_read - 1]:
            _stale(counts, log, key, a, rs, inv_t, at)
        if g is not None:
            _reappeared(counts, log, key, a, rs[g[2]], at)
    n = len(adds)
    indeterminate = list(map(_ACK, adds)).count(None)
    counts["elements"] += n
    counts["acknowledged"] += n - indeterminate
    counts["indeterminate"] += indeterminate
    counts["stable"] += len(latencies) - stable_before
    counts["never-read"] += never
    unexpected = first.keys() - added
    for e, f_read in _unexpected(unexpected, first, rs) if unexpected else ():
        _unexpected_one(counts, log, key, e, rs[f_read], at)


def _lost_unread(counts: dict[str, int], log: AnomalyLog, key: Any, a: _Add, r: tuple[Any, ...],
                 at: Callable[[Any], Op]) -> None:
    e, inv, comp = a[0], a[1], a[2]
    counts["lost"] += 1
    log.add_lazy("lost", lambda: Anomaly(
        "lost", f"key {key!r}: element {e!r} was acknowledged (op {at(comp).index}) "
        f"but no read showed it; the final read (op {at(r[4]).index}) lacks it",
        _ops(at, inv, comp, r[3], r[4]), key))


def _lost_seen(counts: dict[str, int], log: AnomalyLog, key: Any, a: _Add, rs: list[tuple[Any, ...]],
               l_read: int, gone: tuple[Any, ...], at: Callable[[Any], Op]) -> None:
    e, inv, comp = a[0], a[1], a[2]
    counts["lost"] += 1
    log.add_lazy("lost", lambda: Anomaly(
        "lost", f"key {key!r}: element {e!r} was seen by read op {at(rs[l_read][4]).index}, then absent "
        f"from every read that began after it, from op {at(gone[4]).index} on",
        _ops(at, inv, comp, rs[l_read][3], rs[l_read][4], gone[3], gone[4]), key))


def _stale(counts: dict[str, int], log: AnomalyLog, key: Any, a: _Add, rs: list[tuple[Any, ...]],
           inv_t: list[int], at: Callable[[Any], Op]) -> None:
    e, inv, comp = a[0], a[1], a[2]
    counts["stale"] += 1
    miss = rs[bisect.bisect_right(inv_t, a[4])]
    log.add_lazy("stale", lambda: Anomaly(
        "stale", f"key {key!r}: element {e!r} was acknowledged (op {at(comp).index}) but read op "
        f"{at(miss[4]).index}, which began afterwards, lacked it", _ops(at, inv, comp, miss[3], miss[4]), key))


def _reappeared(counts: dict[str, int], log: AnomalyLog, key: Any, a: _Add, gap: tuple[Any, ...],
                at: Callable[[Any], Op]) -> None:
    e, inv, comp = a[0], a[1], a[2]
    counts["reappeared"] += 1
    log.add_lazy("reappeared", lambda: Anomaly(
        "reappeared", f"key {key!r}: element {e!r} vanished from read op {at(gap[4]).index} after "
        f"being seen, then reappeared", _ops(at, inv, comp, gap[3], gap[4]), key))


def _unexpected_one(counts: dict[str, int], log: AnomalyLog, key: Any, e: Any, r: tuple[Any, ...],
                    at: Callable[[Any], Op]) -> None:
    counts["unexpected"] += 1
    log.add_lazy("unexpected", lambda: Anomaly(
        "unexpected", f"key {key!r}: read op {at(r[4]).index} returned {e!r}, which was never added",
        _ops(at, r[3], r[4]), key))


def _unexpected(unexpected: set[Any], first: dict[Any, int], rs: list[tuple[int, int, Any, Any, Any]]
                ) -> list[tuple[Any, int]]:
    """The elements never added, with their first read, in the order the reads first show them (by
    read, then by place in it): ``first`` holds most elements in a set's order."""
    by_read: dict[int, set[Any]] = {}
    for e in unexpected:
        by_read.setdefault(first[e], set()).add(e)
    out: list[tuple[Any, int]] = []
    for k in sorted(by_read):
        todo = by_read[k]
        for e in rs[k][2]:
            if e in todo:
                todo.discard(e)
                out.append((e, k))
    return out


def _gap(gaps: dict[Any, list[int]], e: Any, k: int) -> None:
    """Element ``e`` shows again in read ``k`` after a gap: a new run starts there."""
    g = gaps.get(e)
    if g is None:
        gaps[e] = [k, 1, k - 1]
    else:
        g[0], g[1], g[2] = k, g[1] + 1, k - 1
