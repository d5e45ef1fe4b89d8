"""What ``gc_grace_seconds`` allows a replica to forget: a purged tombstone, and what comes back.

A compaction may drop a tombstone (and the data it shadows) once ``gc_grace_seconds`` have
passed since the delete. Cassandra documents the cost: a replica that never got the tombstone
(or lost it: a crash in periodic commit log mode, a coordinator killed with its hint) still
holds the deleted value, and once every replica that had the tombstone has purged it, a read
brings the value back. That is why repair must run within gc_grace. So, for the convergence
checker (pure, from the history, the run's gc_grace and the snapshots' times):

* a replica that holds nothing for a key whose newest write it owes is an acknowledged delete,
  observed at least gc_grace after that delete's invocation, purged it: that is not a missing
  write; so did one holding nothing where a delete that may have happened (it timed out) was
  invoked after the newest write it owes, at least gc_grace before, and no final read at ALL
  returned a value for the key;
* a final read at ALL that returned a value older than an acknowledged delete is an *expected*
  resurrection when it came at least gc_grace after the delete and, before the final reads,
  no replica held the tombstone, at least one replica had purged it and every other replica
  lacked it for a reason the history shows (its own crash or corruption since the delete, a
  coordinator killed before it could store the hint, a membership change). A resurrection
  within gc_grace, or one with a replica lacking the tombstone for no recorded reason, stays an
  anomaly.

Clock faults move a node's idea of "now": the margin is twice the largest offset the clock
nemesis recorded (a coordinator stamping the delete late and a replica compacting early). A
tombstone's local deletion time is whole seconds (as Cassandra's). node/storage/compaction.py
purges strictly after gc_grace whole seconds (``local_deletion_time < now - gc_grace``, as
Cassandra), but a store that purges at ``<=`` may purge up to one second before gc_grace has
passed by the history's clock, which is allowed slack, not a lost write: the margin has that
second too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.history import NEMESIS, Op

CLOCK_FS = ("bump-clock", "strobe-clock")
# A tombstone's local deletion time is the delete's second, truncated: a purge at whole-second
# now >= ldt + gc_grace can come this much before gc_grace has passed since the delete itself
# (seen on a flush-often campaign with gc_grace 3 s: a purge 2.6 s after the delete).
DELETION_TIME_RESOLUTION_NS = 1_000_000_000


def clock_margin_ns(history: Iterable[Op]) -> int:
    """How much earlier than real time a skewed node may purge: twice the largest clock offset."""
    worst_us = 0
    for op in history:
        if op.process != NEMESIS or op.f not in CLOCK_FS or not isinstance(op.value, dict):
            continue
        for off in (op.value.get("offsets") or {}).values():
            if isinstance(off, (int, float)):
                worst_us = max(worst_us, abs(int(off)))
        delta = op.value.get("delta_ms")
        for ms in (delta.values() if isinstance(delta, dict) else [delta]):
            if isinstance(ms, (int, float)):
                worst_us = max(worst_us, abs(int(ms)) * 1000)
    return 2 * worst_us * 1000


class Grace:
    """The run's gc_grace and when each snapshot pass was taken, in history nanoseconds."""

    def __init__(self, grace_s: float | None, pass_times: dict[str, int], history: list[Op],
                 compactions: dict[str, list[int]] | None = None) -> None:
        self.grace_ns = None if grace_s is None else int(float(grace_s) * 1e9)
        self.grace_s = grace_s
        self.pass_times = pass_times
        self.margin_ns = clock_margin_ns(history) + DELETION_TIME_RESOLUTION_NS
        # Nemesis compactions per node (the store compacts on its own too; these are named).
        self.compactions = compactions if compactions is not None else _compactions(history)

    def passed(self, delete_inv_t: int, at: int | None) -> bool:
        """Whether gc_grace had passed since a delete invoked at ``delete_inv_t`` by ``at``."""
        if self.grace_ns is None or at is None:
            return False
        return at + self.margin_ns >= delete_inv_t + self.grace_ns

    def purge_reason(self, node: str, delete: Op, delete_inv_t: int, at: int, unsure: bool = False) -> str:
        """Why a replica holding nothing for a deleted key purged the tombstone."""
        what = ("the delete that may have happened (op {}, indeterminate) after the newest acknowledged write"
                if unsure else "the acknowledged delete (op {})").format(delete.index)
        s = (f"replica {node} purged the tombstone of {what}: "
             f"gc_grace_seconds ({self.grace_s:g} s) had passed since it "
             f"({(at - delete_inv_t) / 1e9:.1f} s before the snapshot)")
        after = [t for t in self.compactions.get(node, ()) if t >= delete_inv_t + self.grace_ns - self.margin_ns]
        if after:
            s += f", and the flush-compact nemesis compacted {node} {(after[0] - delete_inv_t) / 1e9:.1f} s after the delete"
        return s


def _compactions(history: Iterable[Op]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for op in history:
        if op.process == NEMESIS and op.type == "info" and op.f == "stop-flush-compact" and isinstance(op.value, dict):
            for n in op.value.get("nodes") or []:
                out.setdefault(n, []).append(op.time)
    return out


def pass_times(headers: dict[str, dict[str, Any]], history_start_time: float | None) -> dict[str, int]:
    """Each snapshot pass's time as history nanoseconds: the pass's own ``history_ns`` (the
    history's clock, virtual in sim), else its wall time less test.json's history_start_time."""
    out: dict[str, int] = {}
    for label, h in headers.items():
        if isinstance(h.get("history_ns"), int):
            out[label] = h["history_ns"]
        elif history_start_time is not None and isinstance(h.get("time"), (int, float)):
            out[label] = int((h["time"] - float(history_start_time)) * 1e9)
    return out


def newest_owed_delete(acked: list[tuple[Any, int, Op]], owed: Any) -> tuple[int, int, Op] | None:
    """(timestamp, invocation time, completion) of the newest write a replica owes, if it is a delete."""
    cands = [(ts, inv_t, comp) for ts, inv_t, comp in acked if owed(inv_t)]
    if not cands:
        return None
    ts, inv_t, comp = max(cands, key=lambda a: a[0])
    return (ts, inv_t, comp) if comp.f == "delete" else None
