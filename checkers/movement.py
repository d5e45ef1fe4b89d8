"""Range movements seen from inside: the moment a ring view says new replicas own a range, do
they hold what the old ones did?

The harness reads every key on its natural replicas whenever a node's ring changes during a
membership step (``movements.jsonl``, written by ``harness/movement_probe.py``). A join streams
a range from the replica losing it before announcing NORMAL, a decommission streams the
leaving node's ranges before announcing LEFT, a removenode streams from every survivor before
REMOVED; so a write that ``k`` replicas acknowledged is, at every moment a ring names the new
replicas, held by at least ``k`` of them (the old replicas that took it keep it, and the one
that leaves or dies hands its copy to the one that gains its range). A read at a level that
overlaps the write's then finds it, as the ring promises.

``moved-write-unheld``: a snapshot whose ring names replicas of a key of which fewer hold an
acknowledged write than acknowledged it. Judged conservatively: only writes completed before the
membership step the snapshot was taken in (or after) and not made during any membership step (a write
during a movement also goes to pending replicas, which this check does not model), with no
other fault (kill, partition, pause, flush, ...) from the write's invocation to the snapshot,
no replica damage, and a replica that could not be read counted as holding it. The number that
acknowledged a write is the history's ``acked`` list when the client recorded it, else what the
write's consistency level waits for. Deletes of registers are not judged once gc_grace may have
passed (a compaction may rightly purge the tombstone).

Pure: it reads the history and the recorded snapshots only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from checkers.convergence import _Faults, _hashable, _register_cell, _set_elements
from checkers.quorum import replicas_for
from checkers.result import Anomaly, AnomalyLog, Result
from harness.history import Op, completions

MOVEMENTS_FILE = "movements.jsonl"
KIND = "moved-write-unheld"
MAX_EXAMPLES = 20


def params_for_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Checker params naming the run's movement snapshots, when it has any."""
    path = Path(run_dir) / MOVEMENTS_FILE
    return {"movement_snapshots": str(path)} if path.exists() else {}


def _acked_count(comp: Op, rf: int) -> int:
    acked = comp.extra.get("acked")
    if isinstance(acked, list):
        return len(set(map(str, acked)))
    try:
        return replicas_for(comp.cl or "QUORUM", rf)
    except ValueError:
        return 0


def _writes(history: list[Op], model: str) -> dict[Any, list[tuple[Any, int, Op]]]:
    """Per key, every acknowledged write: (element, or timestamp for a register; invocation
    time; completion)."""
    out: dict[Any, list[tuple[Any, int, Op]]] = {}
    for inv, op in completions(history):
        if op.type != "ok":
            continue
        if model == "set" and inv.f == "add":
            out.setdefault(_hashable(inv.key), []).append((inv.value, inv.time, op))
        elif model != "set" and inv.f in ("write", "put", "delete") and op.timestamp is not None:
            out.setdefault(_hashable(inv.key), []).append((op.timestamp, inv.time, op))
    return out


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge every movement snapshot: each acknowledged write held by as many new replicas as took it."""
    params = params or {}
    source = params.get("movement_snapshots")
    if source is None:
        return Result("movement", "unknown", {}, [], {"reason": "no movement snapshots (movements.jsonl) to check"})
    with Path(source).open(encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    ops = history if isinstance(history, list) else list(history)
    headers = {r["movement"]: r for r in records if r.get("type") == "movement"}
    spec = next((h.get("workload") for h in headers.values() if h.get("workload")), None) or {
        "model": params.get("model") or "register", "column": "v"}
    model = spec.get("model", "register")
    rf = int(params.get("replication_factor") or 3)
    grace_ns = params.get("gc_grace_seconds")
    grace_ns = None if grace_ns is None else int(float(grace_ns) * 1e9)
    faults = _Faults(ops)
    writes = _writes(ops, model)
    by: dict[Any, dict[Any, list[dict[str, Any]]]] = {}
    for r in records:
        if r.get("type") == "replica":
            by.setdefault(r["movement"], {}).setdefault(_hashable(r["key"]), []).append(r)
    log = AnomalyLog(MAX_EXAMPLES)
    counts = {"snapshots": len(headers), "judged_writes": 0, "skipped_snapshots": 0}
    flagged: set[tuple[Any, Any]] = set()
    for m, h in sorted(headers.items()):
        t = int(h["sent_ns"])
        # The step the snapshot was taken in, or the last one before it (the other nodes learn
        # a change by gossip after the step's node has made it).
        step = max(((a, b) for a, b in faults.membership if a <= t), default=None)
        if step is None:
            counts["skipped_snapshots"] += 1
            continue
        for key, recs in sorted(by.get(m, {}).items(), key=lambda kv: str(kv[0])):
            held_sets: dict[int, set[int]] = {}  # a set replica's elements, parsed once
            judged = []
            for what, inv_t, comp in writes.get(key, ()):
                if comp.time >= step[0] or any(a <= comp.time and b >= inv_t for a, b in faults.membership):
                    continue
                if faults.other_fault_during(inv_t, t):
                    continue
                if model != "set" and comp.f == "delete" and grace_ns is not None and inv_t + grace_ns <= t:
                    continue
                judged.append((what, inv_t, comp))
            if model != "set" and judged:
                judged = [max(judged, key=lambda w: w[0])]  # a register: its newest such write
            for what, inv_t, comp in judged:
                counts["judged_writes"] += 1
                need = _acked_count(comp, rf)
                holders, lacking = [], []
                for rec in recs:
                    node = rec["node"]
                    if "error" in rec or faults.replica_damaged(node, inv_t):
                        holders.append(node)
                        continue
                    if model == "set":
                        if id(rec) not in held_sets:
                            held_sets[id(rec)] = _set_elements(rec.get("cells") or [], spec.get("element_prefix", "e"))
                        held = what in held_sets[id(rec)]
                    else:
                        cell = _register_cell(rec, spec.get("column", "v"))
                        held = cell is not None and cell[1] >= what
                    (holders if held else lacking).append(node)
                if len(holders) >= need or (key, m) in flagged:
                    continue
                flagged.add((key, m))
                log.add(Anomaly(
                    KIND,
                    f"key {key!r}: at {t / 1e9:.3f} s {h['viewer']}'s ring named {', '.join(r['node'] for r in recs)} its "
                    f"replicas (during {h.get('step')}), but only {len(holders)} of them held the write of "
                    f"{'a delete' if comp.f == 'delete' else what!r} (op {comp.index}) that {need} replica(s) had "
                    f"acknowledged before the change began ({', '.join(lacking)} lacked it): the ring gave a range to "
                    f"replicas before its data reached them, so a read at the level the write overlapped may miss it",
                    [comp], key, {"movement": m, "viewer": h["viewer"], "holders": holders, "lacking": lacking,
                                  "acknowledged": need}))
    counts[KIND] = log.count(KIND)
    return Result("movement", False if log.counts else True, counts, log.examples, {})
