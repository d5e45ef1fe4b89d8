"""What a node held before a restart must come back from its files.

``restarts.jsonl`` (harness/restart_pass.py) holds every node's rows read right after every
node was killed and restarted at the end of a run, when nothing wrote any more; the convergence
check's after pass (``replicas.jsonl``, pass ``after``: replicas and non-replicas) holds what
each node had just before. A restarted node rebuilds its state from its commit log and SSTables,
so for every cell and tombstone the after pass saw on a node, the restarted node must hold the
same cell or a newer one of the same name (a repair or hint after the pass may have brought
newer), and a partition tombstone at least as new, or one that shadows it:

``lost-on-restart``: key, node, the cells (or partition tombstone) the node had before and not
after. ``appeared-on-restart``: a value after the restart that no node held before (not a tombstone, no
TTL): it came from the node's own files, where it had been deleted and purged or its reads had
missed it (judged once every hint was delivered and every node was read before).
``restart-failed``: a node that did not start again from its files, or started and did not answer
its reads. Not judged: cells with a TTL (they may expire in between), tombstones once gc_grace may
have passed since the run began (a compaction may rightly purge them), nodes either read did not
reach, and a run whose kills lose unsynced writes (the pass is then skipped: its header says why).

Pure: it reads the two snapshot files only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from checkers.convergence import _hashable, load_snapshots
from checkers.result import Anomaly, AnomalyLog, Result
from harness.history import Op

RESTARTS_FILE = "restarts.jsonl"
KIND = "lost-on-restart"
RESURRECTED = "appeared-on-restart"
FAILED = "restart-failed"
# Cells named per finding.
MAX_CELLS = 4


def params_for_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Checker params naming the run's restart snapshot, when it has one."""
    path = Path(run_dir) / RESTARTS_FILE
    return {"restart_snapshots": str(path)} if path.exists() else {}


class _After:
    """What the after pass read: rows by (node, key), every (key, cell name, timestamp) any node
    held, the nodes it could not read, whether it ran and whether every hint had been delivered."""

    def __init__(self, source: Any) -> None:
        self.rows: dict[tuple[str, Any], Mapping[str, Any]] = {}
        self.anywhere: set[tuple[Any, str, int]] = set()
        self.unread: set[str] = set()
        self.ran = False
        self.drained = False
        for rec in load_snapshots(source):
            if rec.get("pass") != "after":
                continue
            if rec.get("type") == "pass":
                self.ran = not rec.get("error")
                self.drained = rec.get("hints_drained") is True
                self.unread |= set((rec.get("nonreplica") or {}).get("unreadable") or {})
            elif rec.get("type") in ("replica", "nonreplica"):
                if "error" in rec:
                    self.unread.add(rec["node"])
                    continue
                key = _hashable(rec["key"])
                self.rows[(rec["node"], key)] = rec
                self.anywhere.update((key, c[0], c[2]) for c in rec.get("cells") or [])


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge ``params['restart_snapshots']`` against the after pass of ``params['replica_snapshots']``."""
    params = params or {}
    counts: dict[str, Any] = {"restart_judged": 0, "nodes": 0, "rows_before": 0, "cells_before": 0, "excused_ttl": 0,
                              "excused_gc_grace": 0, KIND: 0}
    source = params.get("restart_snapshots")
    if source is None:
        return Result("restart", True, counts, [], {"reason": "no restart snapshot: nothing judged"})
    header: Mapping[str, Any] = {}
    after: dict[tuple[str, Any], Mapping[str, Any]] = {}
    unreadable: set[str] = set()
    failed: list[Mapping[str, Any]] = []
    for rec in load_snapshots(source):
        if rec.get("type") == "restart":
            header = rec
        elif rec.get("type") == "row":
            after[(rec["node"], _hashable(rec["key"]))] = rec
        elif rec.get("type") in ("unreadable", "unstarted"):
            unreadable.add(rec["node"])
            failed.append(rec)
    if header.get("skipped"):
        return Result("restart", True, counts, [], {"reason": f"the restart pass did not run: {header['skipped']}"})
    # The pass ran and failed, or has nothing to be compared with: the check could not be made.
    if header.get("error") or "read_ns" not in header:
        return Result("restart", "unknown", counts, [], {"reason": f"the restart pass failed: {header.get('error')}"})
    if params.get("replica_snapshots") is None:
        return Result("restart", "unknown", counts, [], {"reason": "no after pass to compare with"})
    seen = _After(params["replica_snapshots"])
    before = seen.rows
    if not seen.ran:
        return Result("restart", "unknown", counts, [], {"reason": "the after pass did not run"})
    skip = unreadable | seen.unread
    nodes = [n for n in header.get("nodes") or [] if n not in skip]
    counts["nodes"] = len(nodes)
    counts["restart_judged"] = 1
    # A tombstone may be purged once gc_grace passed since it was written: any, when the run was
    # longer than gc_grace (the history's span is the bound, on its own clock).
    grace = params.get("gc_grace_seconds")
    span_s = (header.get("read_ns") or 0) / 1e9
    purgeable = isinstance(grace, (int, float)) and span_s >= grace
    log = AnomalyLog()
    # Nothing was wrong with the cluster when it was killed: a node that does not start from its
    # own files, or starts and cannot read them back, is a finding.
    for rec in failed:
        if rec["node"] in seen.unread:
            continue
        what = "did not start again" if rec["type"] == "unstarted" else "started again but did not answer its reads"
        log.add(Anomaly(FAILED, f"node {rec['node']} {what} after every node was killed and restarted: {rec.get('error')}",
                        [], None, {"node": rec["node"], "error": rec.get("error")}))
    for (node, key), row in before.items():
        if node not in nodes or (not row.get("cells") and row.get("partition_tombstone") is None):
            continue
        counts["rows_before"] += 1
        now = after.get((node, key), {"cells": [], "partition_tombstone": None})
        now_pt = now.get("partition_tombstone")
        have = {c[0]: c for c in now.get("cells") or []}
        lost: list[str] = []
        pt = row.get("partition_tombstone")
        if pt is not None and (now_pt is None or now_pt < pt):
            if purgeable:
                counts["excused_gc_grace"] += 1
            else:
                lost.append(f"a partition tombstone at {pt}" + (f" (now {now_pt})" if now_pt is not None else ""))
        for name, value, ts, tomb, exp in row.get("cells") or []:
            counts["cells_before"] += 1
            if exp is not None:
                counts["excused_ttl"] += 1
                continue
            got = have.get(name)
            if (got is not None and got[2] >= ts) or (now_pt is not None and now_pt >= ts):
                continue
            if tomb and purgeable:
                counts["excused_gc_grace"] += 1
                continue
            was = "(tombstone)" if tomb else repr(value)
            lost.append(f"{name}={was} at {ts}" + (f" (now {got[2]})" if got is not None else " (now absent)"))
        if lost:
            shown = ", ".join(lost[:MAX_CELLS]) + (f" and {len(lost) - MAX_CELLS} more" if len(lost) > MAX_CELLS else "")
            log.add(Anomaly(
                KIND,
                f"key {key!r}: node {node} held {shown} before every node was killed and restarted, and not after: "
                f"what it had written to its files (commit log, SSTables) did not come back",
                [], key, {"node": node, "lost": len(lost)}))
    # A value no node held before the restart came from this node's own files: deleted and
    # purged, shadowed, or never returned by its reads before. Judged once every hint was
    # delivered (a hint lives apart from the table) and every node was read before.
    counts["cells_after"] = 0
    if seen.drained and not seen.unread:
        for (node, key), row in after.items():
            if node not in nodes:
                continue
            held = {c[0]: c[2] for c in (before.get((node, key)) or {}).get("cells") or []}
            back: list[str] = []
            for name, value, ts, tomb, exp in row.get("cells") or []:
                counts["cells_after"] += 1
                if tomb or exp is not None or (key, name, ts) in seen.anywhere or held.get(name, -1) >= ts:
                    continue
                back.append(f"{name}={value!r} at {ts}" + (f" (it held {held[name]})" if name in held else " (it held none)"))
            if back:
                log.add(Anomaly(
                    RESURRECTED,
                    f"key {key!r}: node {node} holds {', '.join(back[:MAX_CELLS])} after every node was restarted, "
                    f"a value no node held before: its own files brought back data it did not serve before "
                    f"(deleted and purged, or lost to its reads)", [], key, {"node": node}))
    counts[KIND] = log.count(KIND)
    counts[RESURRECTED] = log.count(RESURRECTED)
    counts[FAILED] = log.count(FAILED)
    return Result("restart", counts[KIND] == 0 and counts[RESURRECTED] == 0 and counts[FAILED] == 0, counts, log.examples,
                  {"unreadable": sorted(skip)} if skip else {})
