"""After a membership change completes, every acknowledged write is on every replica the new ring names.

Cassandra's promise for range movements: a joining node, or the new replica of a range a
leaving or removed node gave up, gets every write acknowledged before the movement by
streaming, and every write acknowledged during it because coordinators also send it to the
*pending* replica (and wait for it). Once the ring has settled (no node JOINING or LEAVING
anywhere, so no range is pending), a replica of the new ring that lacks an acknowledged write
was streamed too little or skipped as a pending replica, and only repair or read repair can
bring the write back, which hides the bug from every later check.

The convergence checker cannot say so: its ``before`` pass forgives a write made while a
membership change was under way, since a pending replica that was *down* gets no hint. That
excuse is only needed when some other fault could have kept a replica from the write. This
checker judges the same ``before`` snapshot (taken after healing, before the final reads and
their read repair) strictly:

* only when the ring had settled: every node that answered saw the same NORMAL members and no
  node JOINING or LEAVING (``membership_views``, harness/movement_probe.py), the ring did not
  change while the pass read it, and no membership change in the history failed half way;
* a write is owed by a replica unless the convergence checker's own fault excuses apply
  (the replica's crash or corrupted files, a failing disk, a coordinator killed before it
  could store hints), its coordinator left the ring by the time that change completed, or a
  fault other than the membership changes (a partition, kill, pause, ...) was active while
  the write was made, in which case the membership excuse applies again;
* a replica some node still holds hints for, or a delete whose tombstone gc_grace allowed to be
  purged, is not judged.

A replica that lacks an owed write is a ``moved-range-lost-write`` anomaly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers import gcgrace
from checkers.convergence import (HINT_STORED_WITHIN_NS, _Faults, _hashable, _register_cell, _unexplained_losses,
                                  expectations, load_snapshots)
from checkers.result import Anomaly, AnomalyLog, Result, Validity
from harness.history import NEMESIS, Op

KIND = "moved-range-lost-write"
# A node in one of these states has ranges pending somewhere (Cassandra's bootstrap, leave and move).
MOVING = frozenset({"JOINING", "LEAVING", "MOVING"})
# The snapshot pass judged: the one taken before the final reads (and their read repair).
PASS = "before"
MODELS = ("register", "set")


def ring_unsettled(header: dict[str, Any]) -> str | None:
    """Why the ring had not finished moving when a pass was taken, or None when it had."""
    views = header.get("membership_views")
    if not isinstance(views, dict) or not views:
        return "the pass recorded no node's membership view"
    heard = {n: v for n, v in views.items() if isinstance(v, dict)}
    if not heard:
        return "no node answered the status request"
    normal_sets = set()
    for node, view in sorted(heard.items()):
        for peer, status in sorted(view.items()):
            if status in MOVING:
                return f"{node} saw {peer} {status}"
        normal_sets.add(frozenset(p for p, s in view.items() if s == "NORMAL"))
    if len(normal_sets) > 1:
        return "the nodes disagreed on the ring's NORMAL members"
    if (header.get("placement") or {}).get("ring_changed"):
        return "the ring changed while the pass read it"
    return None


def _windows(history: list[Op]) -> tuple[list[tuple[int, int | None]], dict[str, int], list[str]]:
    """Non-membership fault windows (start invoked .. stop completed, open until healed), when
    each node that left the ring had finished leaving, and the membership changes that failed."""
    other: list[tuple[int, int | None]] = []
    open_at: dict[str, int] = {}
    left_done: dict[str, int] = {}
    failed: list[str] = []
    for op in history:
        if op.process != NEMESIS:
            continue
        v = op.value if isinstance(op.value, dict) else {}
        if "membership" in op.f:
            if op.type != "invoke":
                if v.get("error"):
                    failed.append(f"{op.extra.get('action') or op.f}: {v['error']}")
                if op.extra.get("action") in ("decommission", "removenode") and isinstance(v.get("node"), str):
                    left_done[v["node"]] = op.time
            continue
        if op.f == "heal" or op.f.startswith("stop-"):
            if op.type == "invoke":
                continue
            names = list(open_at) if op.f == "heal" else [op.f[len("stop-"):]]
            for name in names:
                if name in open_at:
                    other.append((open_at.pop(name), op.time))
            continue
        if op.f.startswith("start-"):
            if op.type == "invoke":
                open_at.setdefault(op.f[len("start-"):], op.time)
            continue
        # Any other nemesis step (a flush, a repair, a clock change): its own duration.
        if op.type == "invoke":
            open_at.setdefault(op.f, op.time)
        else:
            if op.f in open_at:
                other.append((open_at.pop(op.f), op.time))
    other.extend((t, None) for t in open_at.values())
    return other, left_done, failed


class StrictExcuses:
    """The convergence checker's excuses, without the blanket one for membership changes."""

    def __init__(self, history: list[Op], kills_lose: bool = False) -> None:
        self.loose = _Faults(history, kills_lose)
        self.strict = _Faults(history, kills_lose)
        self.strict.membership = []
        self.other, self.left_done, self.failed = _windows(history)

    def replica_damaged(self, replica: str, inv_t: int) -> bool:
        """Whether the replica's own storage lost data on purpose after a write was invoked."""
        return self.loose.replica_damaged(replica, inv_t)

    def excuses(self, inv_t: int, comp: Op, replica: str | None = None) -> str | None:
        """Why an acknowledged write may be missing on a replica of the settled ring."""
        end = comp.time + HINT_STORED_WITHIN_NS
        if any(a <= end and (b is None or b >= inv_t) for a, b in self.other):
            return self.loose.excuses(inv_t, comp, replica)
        why = self.strict.excuses(inv_t, comp, replica)
        if why is not None:
            return why
        node = comp.node
        if node is not None and node in self.left_done and self.left_done[node] >= inv_t:
            return f"its coordinator {node} left the ring before it finished (with what it was still sending)"
        return None


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge the ``before`` snapshot's replicas strictly once the ring had settled."""
    params = params or {}
    source = params.get("replica_snapshots")
    if source is None:
        return Result("movement", "unknown", {}, [], {"reason": "no per-replica snapshots (replicas.jsonl) to check"})
    records = load_snapshots(source)
    header = next((r for r in records if r.get("type") == "pass" and r.get("pass") == PASS), None)
    ops = history if isinstance(history, list) else list(history)
    if not any(op.process == NEMESIS and "membership" in op.f for op in ops):
        # No range moved: the convergence checker's replica-lost-write already says all there is.
        return Result("movement", True, {}, [], {"not_judged": "no membership change in the history"})
    counts: dict[str, int] = {"judged": 0, "replicas": 0, "skipped_hinted": 0, "skipped_purged": 0, KIND: 0}
    if header is None or header.get("error"):
        why = "no before snapshot" if header is None else f"the before snapshot failed: {header['error']}"
        return Result("movement", "unknown", counts, [], {"reason": why})
    spec = header.get("workload") or {"model": params.get("model") or "register", "column": "v"}
    model = spec.get("model", "register")
    if model not in MODELS:
        return Result("movement", True, counts, [], {"not_judged": f"the {model} model is not judged"})
    unsettled = ring_unsettled(header)
    excuses = StrictExcuses(ops, kills_lose=bool(params.get("volatile_unsynced")))
    if unsettled is None and excuses.failed:
        unsettled = "a membership change failed half way (" + "; ".join(excuses.failed)[:300] + ")"
    if unsettled is not None:
        return Result("movement", True, counts, [], {"not_judged": unsettled})
    held = header.get("hints_held") or {}
    if not held or held.get("unknown"):
        return Result("movement", "unknown", counts, [], {"reason": "the hints nodes held around the pass are unknown"})
    hinted = set(held.get("targets") or [])
    grace = gcgrace.Grace(params.get("gc_grace_seconds"), gcgrace.pass_times({PASS: header}, params.get("history_start_time")), ops)
    at = grace.pass_times.get(PASS)
    exp = expectations(ops, model)
    log = AnomalyLog()
    counts["judged"] = 1
    for rec in records:
        if rec.get("type") != "replica" or rec.get("pass") != PASS or "error" in rec:
            continue
        counts["replicas"] += 1
        if rec["node"] in hinted:
            counts["skipped_hinted"] += 1
            continue
        key = _hashable(rec["key"])
        e = exp.get(key)
        if e is None:
            continue
        lost = _unexplained_losses(rec, e, model, spec, excuses)
        if lost and model == "register" and lost[0][1].f == "delete" and _register_cell(rec, spec.get("column", "v")) is None:
            # Holding nothing where the newest write is a delete: a tombstone gc_grace let go.
            inv_t = next((t for _ts, t, c in e.acked if c is lost[0][1]), None)
            if inv_t is not None and grace.passed(inv_t, at):
                counts["skipped_purged"] += 1
                continue
        if not lost:
            continue
        what, comp = lost[0]
        log.add(Anomaly(
            KIND,
            f"key {key!r}: replica {rec['node']} of the settled ring {rec.get('replicas')} lacks the acknowledged "
            f"write of {what!r} (op {comp.index}, through {comp.node}) after every membership change had completed, "
            f"although no other fault was active then, no node holds a hint for it and its coordinator was neither "
            f"killed nor gone: the range was streamed without it or the write skipped a pending replica",
            [comp], key, {"node": rec["node"], "replicas": rec.get("replicas"), "range": rec.get("range"),
                          "lost": len(lost)}))
    counts[KIND] = log.count(KIND)
    valid: Validity = False if log.counts else True
    return Result("movement", valid, counts, log.examples, {})
