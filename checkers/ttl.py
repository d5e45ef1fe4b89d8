"""Expiring register writes (the ``ttl`` workload): is each value visible exactly while it lives?

A coordinator stamps a write with its wall clock ``w`` (the timestamp it returns, µs) and gives
each cell of a write with a time to live ``T`` the local deletion time ``floor(w) + T`` seconds
(node/server.py), and every read filters out cells expired at the coordinator's clock
(``now < ldt`` is live): so a value's expiry instant on the cluster's clock follows from its
write's timestamp alone. The history's clock maps onto the cluster's: every acknowledged write
was stamped between its invocation and its completion, which bounds the offset between the two
clocks from both sides (sub-millisecond in the simulator and on one machine).

Values are unique per key, so a read's value names its write. Per key, for each acknowledged read:

* ``read-after-expiry``: it returned a value whose write carried a TTL and had certainly expired
  before the read was invoked (an expiry computed late, a TTL lost on the way to a replica).
* ``expired-early``: the key's last write before the read (acknowledged before the read was
  invoked, every other write of the key acknowledged before it was invoked) carried a TTL, had
  certainly not expired when the read completed, and the read returned nothing.
* ``stale-read``: that last write was certainly live, or had no TTL, or was a delete, and the read
  returned another value (an older value, or a deleted one); or it had certainly expired and the
  read returned an older value instead of nothing (an expired cell still shadows what it
  overwrote, as a tombstone at its timestamp does).

A write that did not complete (``info``, or cut off at the end) may have happened at any time
after its invocation, so a key with one pending before a read is not judged for that read; a
failed write did not happen. Clock faults make the mapping meaningless: the verdict is unknown
then, and when the writes' timestamps admit no single offset (client timestamps, skewed nodes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from harness.history import NEMESIS, Op

# Slack on each side of an expiry instant (ns): the timestamp is taken a few microseconds away
# from the clock reading that sets the deletion time (it is bumped past the previous one), and a
# read filters at one instant inside its own span; far below the whole second an off-by-one
# expiry moves, far above the microseconds the mapping is off by.
SLACK_NS = 2_000_000
# Offset bounds that cross by more than this (ns) are clocks that disagree, not rounding.
CROSSED_NS = 1_000_000
# How far (µs) a coordinator's timestamps may run ahead of its clock: each write is stamped at least
# one past the previous one, so a burst of writes in one instant (the simulator's clock stands
# still while a node works) stamps them a few microseconds ahead.
BUMP_US = 1000
KINDS = ("read-after-expiry", "expired-early", "stale-read")
INF = float("inf")


@dataclass(slots=True)
class _Write:
    value: Any  # None for a delete
    inv_t: int
    comp_t: float  # INF: never known to have completed (info, or cut off)
    ts: int | None  # µs, acknowledged writes only
    ttl: int | None
    inv: Op
    comp: Op | None


def clock_fault(op: Op) -> bool:
    """Whether a nemesis operation moved a node's clock (clock skew, bumps, strobes)."""
    return "clock" in str(op.f) or "skew" in str(op.f)


class ClientOps:
    """The client operations of a history in order; ``clock_fault`` says, once iterated, whether
    a nemesis operation on the way moved a node's clock."""

    def __init__(self, history: Iterable[Op]) -> None:
        self._history = history
        self.clock_fault = False

    def __iter__(self) -> Iterator[Op]:
        for op in self._history:
            if op.process == NEMESIS:
                self.clock_fault = self.clock_fault or clock_fault(op)
                continue
            yield op


def _pairs(history: Iterable[Op]) -> tuple[list[tuple[Op, Op | None]], bool]:
    """Client (invocation, completion or None if it never completed) in invocation order, and
    whether a clock fault ran."""
    pending: dict[Any, int] = {}
    out: list[tuple[Op, Op | None]] = []
    ops = ClientOps(history)
    for op in ops:
        if op.type == "invoke":
            pending[op.process] = len(out)
            out.append((op, None))
        else:
            i = pending.pop(op.process, None)
            if i is not None:
                out[i] = (out[i][0], op)
    return out, ops.clock_fault


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge every acknowledged read of an expiring-register history (see the module docstring)."""
    params = params or {}
    if params.get("client_timestamps"):
        return Result("ttl", "unknown", {}, [], {"reason": "client timestamps: a write's timestamp is not the "
                                                           "coordinator's clock, so expiry instants are unknown"})
    pairs, clock = _pairs(history)
    if clock or "clock" in (params.get("nemeses") or []):
        return Result("ttl", "unknown", {}, [], {"reason": "a clock fault ran: node clocks do not map onto the history's"})
    writes: dict[Any, list[_Write]] = {}
    reads: list[tuple[Op, Op]] = []
    lo, hi = -INF, INF  # cluster wall ns minus history ns
    for inv, comp in pairs:
        if inv.f == "read":
            if comp is not None and comp.type == "ok":
                reads.append((inv, comp))
            continue
        if inv.f not in ("write", "delete") or (comp is not None and comp.type == "fail"):
            continue
        ok = comp is not None and comp.type == "ok"
        ts = comp.timestamp if ok and comp is not None else None
        ttl = comp.extra.get("ttl") if ok and comp is not None else None
        w = _Write(inv.value if inv.f == "write" else None, inv.time, comp.time if ok and comp is not None else INF,
                   ts, int(ttl) if isinstance(ttl, int) else None, inv, comp)
        writes.setdefault(inv.key, []).append(w)
        if ts is not None:
            lo = max(lo, ts * 1000 - w.comp_t)
            hi = min(hi, ts * 1000 - w.inv_t)
    counts = {"reads": len(reads), "judged_reads": 0, "expiring_writes": 0, **{k: 0 for k in KINDS}}
    if lo == -INF:
        return Result("ttl", True, counts, [], {"reason": "no acknowledged write to map the clocks by"})
    if lo > hi + CROSSED_NS:
        return Result("ttl", "unknown", counts, [], {"reason": f"write timestamps admit no single clock offset "
                                                               f"({(lo - hi) / 1e6:.3f} ms apart): skewed node clocks"})
    if lo > hi:
        lo = hi = (lo + hi) / 2

    def expiry(w: _Write) -> tuple[float, float]:
        """Earliest and latest history instant (ns) of ``w``'s expiry; INF for none."""
        if w.ttl is None or w.ts is None or w.value is None:
            return INF, INF
        at = (w.ts // 1_000_000 + w.ttl) * 1_000_000_000
        # A timestamp bumped past a busy coordinator's previous one may have crossed a second
        # boundary the clock reading behind the deletion time had not: then it is a second earlier.
        first = at - 1_000_000_000 if w.ts % 1_000_000 < BUMP_US else at
        return first - hi - SLACK_NS, at - lo + SLACK_NS

    by_value = {(k, w.value): w for k, ws in writes.items() for w in ws if w.value is not None}
    counts["expiring_writes"] = sum(1 for ws in writes.values() for w in ws if w.ttl is not None)
    log = AnomalyLog(example_limit(params))
    for inv, comp in reads:
        key, got = inv.key, comp.value
        if got is not None:
            w = by_value.get((key, got))
            if w is not None and w.ts is not None and inv.time > expiry(w)[1]:
                log.add(Anomaly("read-after-expiry", f"key {key!r}: read (op {comp.index}) returned {got!r}, written "
                                f"(op {w.comp.index if w.comp else w.inv.index}) with a TTL of {w.ttl} s at timestamp "
                                f"{w.ts}, which expired {(inv.time - expiry(w)[1]) / 1e9:.3f} s or more before the read",
                                [w.inv, *([w.comp] if w.comp else []), inv, comp], key, {"ttl": w.ttl, "timestamp": w.ts}))
                continue
        last = _last_write(writes.get(key, []), inv.time, comp.time)
        if last is None:
            continue
        counts["judged_reads"] += 1
        early, late = expiry(last)
        if comp.time < early:  # certainly live (or never expiring, or a delete)
            if got != last.value:
                kind = "expired-early" if got is None and last.ttl is not None else "stale-read"
                log.add(Anomaly(kind, f"key {key!r}: read (op {comp.index}) returned {got!r}, but the last write "
                                f"before it (op {last.comp.index if last.comp else last.inv.index}) wrote {last.value!r}"
                                + (f" with a TTL of {last.ttl} s, live until {(early - comp.time) / 1e9:.3f} s or more "
                                   f"after the read" if last.ttl is not None else ""),
                                [last.inv, *([last.comp] if last.comp else []), inv, comp], key,
                                {"expected": last.value, "ttl": last.ttl}))
        elif inv.time > late and got is not None and got != last.value:
            log.add(Anomaly("stale-read", f"key {key!r}: read (op {comp.index}) returned {got!r}, older than the last "
                            f"write before it (op {last.comp.index if last.comp else last.inv.index}, {last.value!r} "
                            f"with a TTL of {last.ttl} s), which had expired: its cell must still shadow older ones",
                            [last.inv, *([last.comp] if last.comp else []), inv, comp], key,
                            {"expected": None, "ttl": last.ttl}))
    counts.update({k: log.count(k) for k in KINDS})
    return Result("ttl", not log.counts, counts, log.examples, {"clock_offset_ns": [lo, hi]})


def _last_write(ws: list[_Write], inv_t: int, comp_t: int) -> _Write | None:
    """The write every read in [inv_t, comp_t] must see (acknowledged before ``inv_t``, every other
    write that may take effect by ``comp_t`` acknowledged before it began, with an older
    timestamp), or None when the writes leave the answer open."""
    done = [w for w in ws if w.comp_t < inv_t and w.ts is not None]
    if not done:
        return None
    last = max(done, key=lambda w: w.inv_t)
    for w in ws:
        if w is last or w.inv_t >= comp_t:
            continue
        if not (w.comp_t < last.inv_t and w.ts is not None and last.ts is not None and w.ts < last.ts):
            return None
    return last
