"""Last-write-wins with client-supplied timestamps: every read returns at least the greatest version completed before it.

When the client stamps its own writes (CQL's ``USING TIMESTAMP``; the register workload's
``--client-timestamps``), the history knows each write's timestamp before the store sees it, and
the order in which last-write-wins must keep versions is known exactly, ties included. Cassandra's
rule (node/storage/cells.py ``reconcile``): the greater timestamp; on equal timestamps a
tombstone, then the greater value compared bytewise (the stored bytes are the value's msgpack
packing). Real time says nothing about that order (a write may carry a smaller or equal
timestamp than one completed before it), so linearizability and the timestamp-order checks of
``lww`` and ``quorum`` are not promised there; this checker is what is:

* stale version: when R + W > N, a read that began after a write had completed returns a version
  at least as great as that write's in the LWW order (the read's and the write's replica sets
  intersect, and every replica, every read resolution and every compaction keeps the greater
  version). A read of a value carries the cell's timestamp, so its version is known; a read of
  nil is a delete's tombstone and only stale when no delete invoked before it ended could be as
  great as the write it missed;
* wrong timestamp: a read returned a value with a timestamp other than the one its acknowledged
  write carried (values are unique per key).

When the levels do not overlap (R + W <= N) stale versions are counted, not held against the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.quorum import replicas_for
from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from harness.history import NEMESIS, Op, completions
from node.protocol import encode_value

READ_FS = frozenset({"read", "get"})
WRITE_FS = frozenset({"write", "put", "delete"})
# The rank classes of node/storage/cells.py: on equal timestamps a tombstone beats a live cell.
_LIVE, _TOMBSTONE = 0, 2
# A version no write has: what a key holds before its first write.
_NOTHING: tuple[Any, ...] = (-1, -1, b"")


def version(ts: int, value: Any) -> tuple[Any, ...]:
    """A cell's place in the LWW order: timestamp, then tombstone over live, then the value's bytes."""
    if value is None:
        return (ts, _TOMBSTONE, b"")
    return (ts, _LIVE, encode_value(value))


def _describe(v: tuple[Any, ...], value: Any) -> str:
    return f"a delete at timestamp {v[0]}" if v[1] == _TOMBSTONE else f"{value!r} at timestamp {v[0]}"


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Find reads that returned a smaller LWW version than a write completed before they began."""
    params = params or {}
    rf = int(params.get("replication_factor") or 1)
    r_need = replicas_for(params.get("read_cl") or "ONE", rf)
    w_need = replicas_for(params.get("write_cl") or "ONE", rf)
    writes: dict[Any, list[tuple[int, int, tuple[Any, ...], Any, Op, str | None]]] = {}
    deletes_invoked: dict[Any, list[tuple[int, tuple[Any, ...] | None]]] = {}
    reads: dict[Any, list[tuple[int, int, Any, int | None, Op, str | None]]] = {}
    for inv, op in _pairs(history, deletes_invoked):
        if inv.f in WRITE_FS:
            value = None if inv.f == "delete" else inv.value
            if inv.f == "delete" and op.type != "fail":
                known = version(op.timestamp, None) if op.type == "ok" and op.timestamp is not None else None
                deletes_invoked.setdefault(inv.key, []).append((inv.time, known))
            if op.type == "ok" and op.timestamp is not None:
                writes.setdefault(inv.key, []).append((inv.time, op.time, version(op.timestamp, value), value, op,
                                                       op.cl or inv.cl))
        elif inv.f in READ_FS and op.type == "ok":
            reads.setdefault(inv.key, []).append((inv.time, op.time, op.value, op.timestamp, op, op.cl or inv.cl))
    log = AnomalyLog(example_limit(params))
    counts = {"writes": sum(map(len, writes.values())), "reads": sum(map(len, reads.values())), "keys": 0,
              "ties": 0, "stale-version": 0, "expected-stale-version": 0, "wrong-timestamp": 0}
    for key in dict.fromkeys([*writes, *reads]):  # first-named order, not the hash seed's
        counts["keys"] += 1
        _check_key(key, writes.get(key, []), reads.get(key, []), deletes_invoked.get(key, []), rf, r_need, w_need,
                   log, counts)
    counts["stale-version"] = log.count("stale-version")
    counts["wrong-timestamp"] = log.count("wrong-timestamp")
    return Result("lww-order", not log.counts, counts, log.examples,
                  {"levels_overlap": r_need + w_need > rf})


def _pairs(history: Iterable[Op], deletes_invoked: dict[Any, list[tuple[int, tuple[Any, ...] | None]]]
           ) -> Iterable[tuple[Op, Op]]:
    """completions(history), noting in ``deletes_invoked`` each delete that never completed (cut at
    the time limit: indeterminate, as an info, so its tombstone may be the nil a later read sees)."""
    pending: dict[Any, Op] = {}

    def tracked() -> Iterable[Op]:
        for op in history:
            if op.process != NEMESIS:
                if op.type == "invoke":
                    pending[op.process] = op
                else:
                    pending.pop(op.process, None)
            yield op

    yield from completions(tracked())
    for inv in pending.values():
        if inv.f == "delete":
            deletes_invoked.setdefault(inv.key, []).append((inv.time, None))


def _level(cl: str | None, rf: int, default: int) -> int:
    try:
        return replicas_for(cl, rf) if cl else default
    except ValueError:
        return default


def _check_key(key: Any, ws: list[tuple[Any, ...]], rs: list[tuple[Any, ...]], dels: list[tuple[int, Any]], rf: int,
               r_need: int, w_need: int, log: AnomalyLog, counts: dict[str, int]) -> None:
    by_ts: dict[int, set[Any]] = {}
    written_ts: dict[Any, int] = {}
    for w in ws:
        by_ts.setdefault(w[2][0], set()).add(w[2])
        if w[3] is not None:
            written_ts[w[3]] = w[2][0]
    counts["ties"] += sum(len(s) - 1 for s in by_ts.values())
    done = sorted(ws, key=lambda w: w[1])  # by completion
    j = 0
    # The greatest version completed so far, per write level that overlaps a read (any level
    # when none is recorded): a read is held only to writes its level must intersect.
    best: dict[int, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
    for r in sorted(rs, key=lambda r: r[0]):
        inv_t, comp_t, value, ts, rop, rcl = r
        while j < len(done) and done[j][1] < inv_t:
            w = done[j]
            wl = _level(w[5], rf, w_need)
            if wl not in best or w[2] > best[wl][0]:
                best[wl] = (w[2], w)
            j += 1
        if value is not None and ts is not None and value in written_ts and written_ts[value] != ts:
            log.add(Anomaly(
                "wrong-timestamp",
                f"key {key!r}: read (op {rop.index}) returned {value!r} at timestamp {ts}, but the acknowledged write "
                f"of {value!r} carried timestamp {written_ts[value]}",
                [rop], key, {"read_ts": ts, "write_ts": written_ts[value]}))
            continue
        rl = _level(rcl, rf, r_need)
        for wl, (top, w) in best.items():
            if value is not None:
                got = version(ts, value) if ts is not None else None
                if got is None or got >= top:
                    continue
            else:
                if top[1] == _TOMBSTONE:
                    continue
                # A delete invoked before the read ended may be the tombstone it saw.
                if any(t <= comp_t and (v is None or v >= top) for t, v in dels):
                    continue
                got = _NOTHING
            if rl + wl <= rf:
                counts["expected-stale-version"] += 1
                continue
            wop = w[4]
            log.add(Anomaly(
                "stale-version",
                f"key {key!r}: read (op {rop.index}) began after the write of {_describe(top, w[3])} (op {wop.index}) "
                f"had completed, yet returned {'nil' if value is None else _describe(got, value)}, which is smaller in "
                f"the LWW order (greater timestamp, then a tombstone, then the greater value): "
                + ("on equal timestamps the tie-break chose the wrong version" if got[0] == top[0] else
                   "a version with a smaller timestamp won"),
                [wop, rop], key, {"write_version": [top[0], top[1]], "read_ts": ts}))
            break
