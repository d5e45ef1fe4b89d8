"""What a crash that loses unsynced commit log writes is allowed to cost, by commit log mode.

In ``periodic`` mode a node acknowledges a write once it is in the commit log's buffer and
fsyncs every ``commitlog_sync_period_ms``: a crash (the crash nemesis, or a corrupt nemesis's
kill, with ``volatile_unsynced`` files) may lose every write it acknowledged within about one
period before it, on every replica it hit. That is what periodic mode allows, as Cassandra
documents it; ``batch`` and ``group`` acknowledge only fsynced writes and must lose nothing.

This pass runs after the other checkers: in periodic mode, a loss-shaped finding (a lost write,
a stale or non-monotonic read, a lost set element, a non-linearizable key) on a key that had an
acknowledged write within a sync period (plus slack) before a crash is moved from the checker's
anomalies to ``details['allowed_by_periodic']`` and counted as ``periodic-<kind>``; every other
finding, and every finding in batch or group mode, stays an anomaly. Linearizability is checked
again without the exposed keys, so one allowed loss cannot hide another key's violation.
Pure: a function of the history, the parameters and the other checkers' results.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Callable, Iterable
from typing import Any

from checkers.result import Anomaly, AnomalyLog, Result
from harness.history import NEMESIS, Op, completions

# Findings a lost write can produce, per checker.
LOSS_KINDS = {
    "lww": ("lost-write",),
    # A resurrection is a lost delete: the tombstone died unsynced, the older value came back.
    "quorum": ("stale-read", "non-monotonic-read", "resurrection"),
    # Reappeared: the replicas a read reached lost the element, one the crash spared still had it.
    "set": ("lost", "stale", "reappeared"),
    "linearizable": ("not-linearizable",),
}
# Nemesis steps whose kills lose unsynced bytes (their value says lost_unsynced: true).
CRASH_FS = ("start-crash", "start-corrupt")
# The periodic fsync runs on the node's housekeeping tick (up to 1 s late) and takes time itself.
SLACK_MS = 2_000
WRITE_FS = frozenset({"write", "put", "cas", "add", "append", "batch", "delete"})


def crashes(history: Iterable[Op], kills_lose: bool = False) -> list[dict[str, Any]]:
    """Every completed crash step that lost unsynced bytes: time, nodes, bytes held unsynced.
    With ``kills_lose`` (the run's nodes hold unsynced bytes in memory, ``volatile_unsynced``,
    because the crash nemesis is in it) every kill nemesis step is such a crash too."""
    out = []
    # The disk nemesis kills its node at the window's end (to restart it): a crash too then.
    steps = (*CRASH_FS, "start-kill", "stop-disk") if kills_lose else CRASH_FS
    for op in history:
        if op.process != NEMESIS or op.type != "info" or op.f not in steps or not isinstance(op.value, dict):
            continue
        if not op.value.get("lost_unsynced") and op.f not in ("start-kill", "stop-disk"):
            continue
        held = op.value.get("unsynced_bytes") or {}
        nodes = op.value.get("nodes") or ([op.value["node"]] if op.value.get("node") else [])
        if op.f == "stop-disk":
            nodes = op.value.get("restarted", nodes)  # a healed data disk's node was not killed
            if not nodes:
                continue
        out.append({"time": op.time, "index": op.index, "nodes": nodes,
                    "unsynced_bytes": sum(v for v in held.values() if isinstance(v, int))})
    return out


def _key(k: Any) -> Any:
    return tuple(_key(x) for x in k) if isinstance(k, list) else k


def _acked_writes(history: Iterable[Op]) -> dict[Any, list[int]]:
    """Per key, the completion times of acknowledged writes, sorted."""
    out: dict[Any, list[int]] = {}
    for inv, op in completions(history):
        if op.type == "ok" and inv.f in WRITE_FS:
            out.setdefault(_key(inv.key), []).append(op.time)
    for times in out.values():
        times.sort()
    return out


def _exposed(times: list[int], crash_times: list[int], window_ns: int, before: float) -> bool:
    """Whether a write acknowledged at one of ``times`` lies within ``window_ns`` before a crash
    that happened before ``before``."""
    for t in crash_times:
        if t > before:
            break
        i = bisect.bisect_left(times, t - window_ns)
        if i < len(times) and times[i] <= t:
            return True
    return False


def reclassify(results: dict[str, Result], source: Callable[[], Iterable[Op]], params: dict[str, Any],
               recheck: Callable[[Iterable[Op], dict[str, Any]], Result] | None = None,
               rerun: Callable[[str, dict[str, Any]], Result] | None = None) -> dict[str, Result]:
    """Move what periodic mode allows out of the anomalies; add a ``durability`` result when a
    crash lost unsynced writes. ``recheck`` re-runs linearizability on a history; ``rerun``
    re-runs a named checker with other params (to keep every example of a loss kind)."""
    found = crashes(source(), kills_lose=bool(params.get("volatile_unsynced")))
    if not found:
        return results
    mode = params.get("commitlog_sync")
    period_ms = int(params.get("commitlog_sync_period_ms") or 10_000)
    window_ns = (period_ms + SLACK_MS) * 1_000_000
    crash_times = sorted(c["time"] for c in found)
    counts: dict[str, int] = {"crashes": len(found), "unsynced_bytes_at_kill": sum(c["unsynced_bytes"] for c in found)}
    allowed_total = 0
    if mode == "periodic":
        writes = _acked_writes(source())
        exposed_keys = {k for k, ts in writes.items() if _exposed(ts, crash_times, window_ns, float("inf"))}
        for name, kinds in LOSS_KINDS.items():
            r = results.get(name)
            if r is None or r.valid is True:
                continue
            if name == "linearizable":
                moved = _linearizable(r, source, params, exposed_keys, recheck)
                if moved is not None:
                    results[name] = moved
                    allowed_total += moved.counts.get("periodic-not-linearizable", 0)
                continue
            if rerun is not None and _uncounted(r, kinds):
                # More findings than the kept examples: each must be judged, or the ones never
                # kept stay anomalies and a periodic crash's ordinary losses read as a violation.
                r = rerun(name, {**params, "max_examples": sys.maxsize})
            keep: list[Anomaly] = []
            allowed: list[Anomaly] = []
            for a in r.anomalies:
                seen = max((op.time for op in a.ops), default=0)
                # A lost write must itself be one acknowledged within a period before a crash.
                own = [a.ops[1].time] if a.kind in ("lost-write", "lost") and len(a.ops) > 1 else None
                if a.kind == "reappeared" and len(a.ops) == 4:
                    own = [a.ops[1].time]  # the add's acknowledgement (invoke, ok, seen, vanished)
                times = own if own is not None else _writes_of(writes, a.key)
                if a.kind in kinds and _exposed(times, crash_times, window_ns, seen):
                    allowed.append(a)
                else:
                    keep.append(a)
            if not allowed:
                continue
            new_counts = dict(r.counts)
            for a in allowed:
                new_counts[a.kind] = new_counts.get(a.kind, 1) - 1
                new_counts[f"periodic-{a.kind}"] = new_counts.get(f"periodic-{a.kind}", 0) + 1
            # Findings counted beyond the kept examples were not looked at: they stay anomalies.
            left = len(keep) + sum(max(0, new_counts.get(k, 0)) for k in {a.kind for a in allowed})
            details = dict(r.details)
            details["allowed_by_periodic"] = [a.to_json() for a in allowed[:5]]
            details["periodic_note"] = _note(period_ms)
            # (After a rerun that kept every finding, results.json keeps the usual examples.)
            results[name] = Result(r.name, r.valid if left else True, new_counts, _examples(keep), details)
            allowed_total += len(allowed)
    counts["allowed_by_periodic"] = allowed_total
    details = {"commitlog_sync": mode, "commitlog_sync_period_ms": period_ms, "crashes": found[:20],
               "note": _note(period_ms) if mode == "periodic" else
               f"{mode} mode acknowledges only fsynced writes: any loss the other checkers found is an anomaly"}
    results["durability"] = Result("durability", True, counts, [], details)
    return results


def _examples(anomalies: list[Anomaly]) -> list[Anomaly]:
    """The first MAX_EXAMPLES anomalies of each kind."""
    log = AnomalyLog()
    for a in anomalies:
        log.add(a)
    return log.examples


def _uncounted(r: Result, kinds: tuple[str, ...]) -> bool:
    """Whether ``r`` counted more findings of a loss kind than it kept as examples."""
    kept: dict[str, int] = {}
    for a in r.anomalies:
        kept[a.kind] = kept.get(a.kind, 0) + 1
    return any(int(r.counts.get(k, 0) or 0) > kept.get(k, 0) for k in kinds)


def _writes_of(writes: dict[Any, list[int]], key: Any) -> list[int]:
    """The acknowledged write times of a key, or of the row a cell ``[key, column]`` belongs to."""
    found = writes.get(_key(key))
    if found is None and isinstance(key, (list, tuple)) and key:
        found = writes.get(_key(key[0]))
    return found or []


def _note(period_ms: int) -> str:
    return (f"periodic commit log mode: a crash may lose writes acknowledged within its {period_ms} ms sync period "
            f"(+{SLACK_MS} ms slack); such findings are allowed, not anomalies")


def _linearizable(r: Result, source: Callable[[], Iterable[Op]], params: dict[str, Any], exposed: set[Any],
                  recheck: Callable[[Iterable[Op], dict[str, Any]], Result] | None) -> Result | None:
    """Re-check linearizability without the keys a crash may have cost writes."""
    if recheck is None or not r.anomalies:
        return None
    key = _key(r.anomalies[0].key)
    # A row's cell is named [row, column]; the row's writes are what a crash may have cost.
    row = key[0] if isinstance(key, tuple) and key else key
    if key not in exposed and row not in exposed:
        return None
    rest = recheck((op for op in source() if op.process == NEMESIS or _key(op.key) not in exposed), params)
    counts = dict(rest.counts)
    counts["periodic-not-linearizable"] = 1
    counts["keys_set_aside"] = len(exposed)
    details = dict(rest.details)
    details["allowed_by_periodic"] = [r.anomalies[0].to_json()]
    details["periodic_note"] = (_note(int(params.get("commitlog_sync_period_ms") or 10_000))
                                + f"; {len(exposed)} keys with such writes are set aside and the rest re-checked")
    return Result(r.name, rest.valid, counts, rest.anomalies, details)
