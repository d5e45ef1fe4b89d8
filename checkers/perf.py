"""Performance: latency quantiles per operation kind, throughput over time, and availability
(the share of ``ok`` completions) inside and outside each nemesis fault window.

Informational: the result is always valid. Fault windows open with a nemesis start operation
(``start-<nemesis>`` as the schedule records them, or the older kill, pause, bump-clock,
strobe-clock) and close with its matching stop (``stop-<nemesis>``, start, resume, reset-clock),
or at the end.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from checkers.result import Result
from harness.history import NEMESIS, HistoryFile, Op, gc_paused

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999, 1.0)

# Which nemesis f closes which: the fault kind (the window's name) for each opening f.
_OPENS = {
    "start-partition": ("partition", "stop-partition"),
    "kill": ("kill", "start"),
    "pause": ("pause", "resume"),
    "bump-clock": ("clock", "reset-clock"),
    "strobe-clock": ("clock", "reset-clock"),
    "start-latency": ("latency", "stop-latency"),
}
_CLOSES = {close: kind for kind, close in _OPENS.values()}


def _opens(f: str) -> str | None:
    """The window kind ``f`` opens: the names above, or the schedule's ``start-<nemesis>``."""
    if f in _OPENS:
        return _OPENS[f][0]
    return f[len("start-"):] if f.startswith("start-") else None


def _closes(f: str) -> str | None:
    """The window kind ``f`` closes: the names above, or the schedule's ``stop-<nemesis>``."""
    if f in _CLOSES:
        return _CLOSES[f]
    return f[len("stop-"):] if f.startswith("stop-") else None

# Throughput buckets: one second, the resolution at which a partition's effect is visible.
DEFAULT_BUCKET_NS = 1_000_000_000


def quantiles(values: Sequence[int] | array, scale: float = 1.0) -> dict[str, float]:
    """Nearest-rank quantiles of ``values`` (multiplied by ``scale``), keyed "0.5", ..., "1.0"."""
    if not values:
        return {}
    s = sorted(values)
    n = len(s)
    return {str(q): round(s[min(n - 1, max(0, int(q * n + 0.999999) - 1))] * scale, 6) for q in QUANTILES}


def fault_windows(nemesis_ops: Iterable[Op], end: int) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every fault window, from the nemesis operations' times."""
    open_at: dict[str, int] = {}
    windows: list[tuple[int, int, str]] = []
    for op in nemesis_ops:
        opens, closes = _opens(op.f), _closes(op.f)
        if op.type == "invoke" and (opens or closes):
            # Windows run from the opening's invocation to the closing's completion, so the time
            # a fault takes to apply or heal counts as inside it.
            if opens and opens not in open_at:
                open_at[opens] = op.time
            continue
        if opens:
            open_at.setdefault(opens, op.time)
        elif closes:
            if closes in open_at:
                windows.append((open_at.pop(closes), op.time, closes))
    for kind, start in open_at.items():
        windows.append((start, end, kind))
    windows.sort()
    return windows


_Collected = tuple[dict[str, array], list[Op], array, array, dict[int, list[int]], int]
_CODES = {"ok": 0, "fail": 1, "info": 2}


def _collect_ops(history: Iterable[Op], bucket: int) -> _Collected:
    """One pass: latencies per ``f:type``, the nemesis operations, (invoke time, outcome code)
    per client operation, ok/fail/info counts per throughput bucket, and the last time."""
    pending: dict[Any, Op] = {}
    # Latencies per (f, type), named "f:type" at the end (no string built per operation).
    by_kind: dict[tuple[str, str], array] = {}
    nemesis: list[Op] = []
    times = array("q")
    outcome = array("b")
    thr: dict[int, list[int]] = {}
    end = 0
    codes = _CODES
    pop = pending.pop
    add_time, add_outcome = times.append, outcome.append
    for op in history:
        t_op = op.time
        if t_op > end:
            end = t_op
        p = op.process
        if p.__class__ is not int and p == NEMESIS:
            nemesis.append(op)
            continue
        t = op.type
        if t == "invoke":
            pending[p] = op
            continue
        inv = pop(p, None)
        if inv is None:
            continue
        inv_t = inv.time
        k = (inv.f, t)
        a = by_kind.get(k)
        if a is None:
            a = by_kind[k] = array("q")
        a.append(t_op - inv_t)
        code = codes[t]
        add_time(inv_t)
        add_outcome(code)
        n = t_op // bucket
        b = thr.get(n)
        if b is None:
            b = thr[n] = [0, 0, 0]
        b[code] += 1
    for inv in pending.values():
        add_time(inv.time)
        add_outcome(2)
    # (type has no colon, so no two kinds share a name)
    lat = {f"{f}:{t}": a for (f, t), a in by_kind.items()}
    return lat, nemesis, times, outcome, thr, end


@gc_paused
def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Latency quantiles, throughput per bucket and availability per fault window."""
    params = params or {}
    bucket = int(params.get("perf_bucket_ns") or DEFAULT_BUCKET_NS)
    records = history.records() if isinstance(history, HistoryFile) else None
    lat, nemesis, times, outcome, thr, end = _collect_ops(records if records is not None else history, bucket)
    windows = fault_windows(nemesis, end)
    # Availability: each operation counts inside every window its invocation falls in. Windows
    # of different kinds may overlap, so cut time into segments with their set of open windows.
    bounds = sorted({w[0] for w in windows} | {w[1] + 1 for w in windows})
    active = [[i for i, w in enumerate(windows) if w[0] <= b <= w[1]] for b in bounds]
    inside = [[0, 0] for _ in windows]  # ok, total
    outside = [0, 0]
    for t, c in zip(times, outcome):
        j = bisect.bisect_right(bounds, t) - 1
        hits = active[j] if j >= 0 else ()
        if not hits:
            outside[1] += 1
            outside[0] += c == 0
        for i in hits:
            inside[i][1] += 1
            inside[i][0] += c == 0
    by_kind: dict[str, list[int]] = {}
    per_window = []
    for (s, e, kind), (ok, tot) in zip(windows, inside):
        bk = by_kind.setdefault(kind, [0, 0])
        bk[0] += ok
        bk[1] += tot
        per_window.append({"kind": kind, "start_ns": s, "end_ns": e, "ok": ok, "total": tot,
                           "availability": round(ok / tot, 4) if tot else None})
    details = {
        "latency_ms": {k: quantiles(v, scale=1e-6) for k, v in sorted(lat.items())},
        "throughput": {"bucket_s": bucket / 1e9,
                       "series": [{"t": k * bucket / 1e9, "ok": v[0], "fail": v[1], "info": v[2]}
                                  for k, v in sorted(thr.items())]},
        "availability": {
            "outside": {"ok": outside[0], "total": outside[1],
                        "availability": round(outside[0] / outside[1], 4) if outside[1] else None},
            "inside": {k: {"ok": v[0], "total": v[1], "availability": round(v[0] / v[1], 4) if v[1] else None}
                       for k, v in by_kind.items()},
            "windows": per_window,
        },
    }
    counts = {"operations": len(times), "windows": len(windows),
              "ok": sum(1 for c in outcome if c == 0)}
    return Result("perf", True, counts, [], details)
