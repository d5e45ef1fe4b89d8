"""Every value a replica holds must still carry the timestamp and the TTL of the write that made it.

The register and ttl workloads write unique values per key, so a value a node holds names its
write, and an acknowledged write's completion says its timestamp (and, for the ttl workload, its
time to live). Whatever path took a cell to a replica (the write itself, a hint, read repair,
streaming, repair, commit-log replay, a flush or compaction), it must arrive as the write made it:
last-write-wins depends on the timestamp, and expiry on the TTL. So for every live cell in the
replica snapshots (``replicas.jsonl`` for registers, harness/convergence.py; ``ttl_replicas.jsonl``
for the ttl workload, harness/cell_snapshot.py) whose value an acknowledged write of that key wrote:

``timestamp-changed``: the cell's timestamp is not the write's (a path re-stamped the value: a
hint or repair written with the deliverer's clock, say). ``ttl-lost``: the write carried a TTL and
the cell holds the value with no expiry (it would never expire on that replica). ``ttl-gained``:
the write carried none and the cell expires. ``expiry-moved``: both expire, at different instants:
a coordinator gives a cell of a write stamped ``w`` µs with TTL ``T`` the deletion time
``floor(w / 1e6) + T`` (node/server.py; a timestamp bumped past the previous one by at most
:data:`BUMP_US` may put it a second earlier), so the cell's own timestamp fixes its expiry.

Not judged: tombstones, values no acknowledged write made (a write that timed out has no known
timestamp), keys where two acknowledged writes share a value, client-supplied timestamps and clock
faults for ``expiry-moved`` (the deletion time comes from the coordinator's clock, the timestamp
then from elsewhere). Nothing judged without a snapshot; unknown when a snapshot pass failed and
nothing was found. Pure: it reads the history and the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from checkers.ttl import ClientOps
from harness.history import Op

TTL_SNAPSHOT_FILE = "ttl_replicas.jsonl"
KINDS = ("timestamp-changed", "ttl-lost", "ttl-gained", "expiry-moved")
# How far (µs) a coordinator's timestamp may run ahead of the clock reading behind the deletion
# time (checkers/ttl.py's bound: each write is stamped at least one past the previous one).
BUMP_US = 1000
# The models whose values are unique per key and whose snapshots this checker reads.
MODELS = ("register", "ttl")


def params_for_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Checker params naming the run's ttl snapshot, when it has one."""
    path = Path(run_dir) / TTL_SNAPSHOT_FILE
    return {"ttl_snapshots": str(path)} if path.exists() else {}


def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _records(source: Any) -> Iterator[dict[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    else:
        yield from source


def _writes(history: Iterable[Op]) -> tuple[dict[tuple[Any, Any], tuple[int, int | None, Op]], set[tuple[Any, Any]], bool]:
    """(key, value) -> (timestamp, ttl, completion) of acknowledged writes; the (key, value)
    pairs two of them wrote; whether a clock fault ran."""
    out: dict[tuple[Any, Any], tuple[int, int | None, Op]] = {}
    twice: set[tuple[Any, Any]] = set()
    ops = ClientOps(history)
    for op in ops:
        if op.type != "ok" or op.f != "write" or op.value is None or not isinstance(op.timestamp, int):
            continue
        kv = (_key(op.key), _key(op.value))
        if kv in out:
            twice.add(kv)
        ttl = op.extra.get("ttl")
        out[kv] = (op.timestamp, int(ttl) if isinstance(ttl, int) else None, op)
    return out, twice, ops.clock_fault


def _expiries(ts: int, ttl: int) -> tuple[int, int]:
    return ((ts - BUMP_US) // 1_000_000 + ttl, ts // 1_000_000 + ttl)


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge every live replica cell of the run's snapshots against the write that made its value."""
    params = params or {}
    model = params.get("model") or "register"
    counts: dict[str, int] = {"cells_judged": 0, "cells_unattributed": 0, **{k: 0 for k in KINDS}}
    source = params.get("ttl_snapshots") if model == "ttl" else params.get("replica_snapshots")
    if model not in MODELS or source is None:
        return Result("cell-provenance", True, counts, [], {"reason": f"no {model} replica snapshot: nothing judged"})
    writes, twice, clock = _writes(history)
    judge_expiry = not clock and "clock" not in (params.get("nemeses") or []) and not params.get("client_timestamps")
    log = AnomalyLog(example_limit(params))
    seen: set[tuple[Any, ...]] = set()
    failed: list[str] = []
    for rec in _records(source):
        if rec.get("type") == "pass" and rec.get("error"):
            failed.append(f"{rec.get('pass')} pass: {rec['error']}")
        if rec.get("type") not in ("replica", "nonreplica") or "cells" not in rec:
            continue
        key = _key(rec.get("key"))
        for cell in rec.get("cells") or []:
            # localread's cell: [name, value, timestamp, is_tombstone, expiry (TTL cells only)]
            name, value, ts = cell[0], cell[1], cell[2]
            tomb = bool(cell[3]) if len(cell) > 3 else value is None
            expiry = cell[4] if len(cell) > 4 else None
            if tomb or value is None:
                continue
            kv = (key, _key(value))
            w = writes.get(kv)
            if w is None or kv in twice:
                counts["cells_unattributed"] += 1
                continue
            ident = (rec.get("node"), key, name, _key(value), ts, expiry)
            if ident in seen:  # the same cell read again by a later pass
                continue
            seen.add(ident)
            counts["cells_judged"] += 1
            wts, ttl, op = w
            kind = None
            if ts != wts:
                kind = "timestamp-changed"
                what = f"timestamp {ts}, the write's is {wts}"
            elif ttl is not None and expiry is None:
                kind, what = "ttl-lost", f"no expiry, the write had a TTL of {ttl} s"
            elif ttl is None and expiry is not None:
                kind, what = "ttl-gained", f"an expiry at {expiry} s, the write had no TTL"
            elif ttl is not None and judge_expiry and expiry not in _expiries(wts, ttl):
                kind = "expiry-moved"
                what = f"expiry {expiry} s, the write's TTL of {ttl} s at {wts} us gives {_expiries(wts, ttl)[1]} s"
            if kind is None:
                continue
            node, where = rec.get("node"), rec.get("pass")
            log.add(Anomaly(kind, f"key {key!r}: {node} holds value {value!r} ({where} pass) with {what}", [op], key,
                            {"node": node, "pass": where}))
    counts.update(log.counts)
    details: dict[str, Any] = {"judged_expiry": judge_expiry}
    if log.counts:
        return Result("cell-provenance", False, counts, log.examples, details)
    if failed:
        # A snapshot that failed read nothing to clear the store with.
        return Result("cell-provenance", "unknown", counts, [], {**details, "reason": "; ".join(failed)})
    if not counts["cells_judged"]:
        details["reason"] = "no replica cell of an acknowledged write to judge"
    return Result("cell-provenance", True, counts, [], details)
