"""Did the campaign do what was asked? Interrupted runs and faults that never took effect.

A history can be free of anomalies because the store is correct, or because the test never
tested it: the run was cut short, or every fault injection failed (latency on hosts without a
fault proxy, a clock nemesis without clock control). Jepsen's answer to "I could not tell" is
``unknown``, and that is this checker's verdict for such runs, so no run looks green when it did
not do what was asked. It reads the nemesis operations of the history and two parameters:
``nemeses`` (the requested nemesis names) and ``interrupted`` (test.json's flag).

An injection is a ``start-<name>`` nemesis step. It took effect when it completed with a type
other than ``fail`` and a value without an ``error``; a failed one is a ``fail`` op (older
histories: an ``info`` op whose value holds an ``error``). A requested nemesis none of whose
injections took effect makes the run unknown whether its starts failed, declined (a membership
change the cluster size did not allow) or never came (a run too short for one window of each):
the store was not tested under it either way.

The same goes for the workload itself: a client operation (read, write, add, ...) that was tried
at least ``MIN_TRIED`` times during the workload and never completed ``ok`` (every read refused
as an invalid request, say, or a whole run partitioned at ALL) leaves the history free of
anomalies for that operation because none happened, not because the store is right; the run is
``unknown`` and the reason names the operation and its most common error. The final reads after
the workload are not counted: they are the harness's, not the workload's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.result import Anomaly, Result
from harness.history import NEMESIS, Op

# How many failed injections keep their operation in the result: enough to see why they failed.
MAX_EXAMPLES = 10
# A client operation tried this often without one ok says the workload did not test it.
MIN_TRIED = 10


def _failed(op: Op) -> bool:
    """Whether a start step's completion says the fault was not injected."""
    return op.type == "fail" or (isinstance(op.value, dict) and "error" in op.value)


def _took_effect(op: Op) -> bool:
    """Whether a start step's completion injected something (membership can decline to change)."""
    if _failed(op):
        return False
    return not (isinstance(op.value, dict) and op.value.get("action") == "none")


def _why_not(started: int, failed: int) -> str:
    """Why a requested nemesis has no effective injection, in a few words."""
    if not started:
        return "never started: the run ended first"
    if failed == started:
        return f"{failed} failed"
    if failed:
        return f"{failed} failed, {started - failed} changed nothing"
    return f"{started} changed nothing"


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """``unknown`` when the run was interrupted, or when some requested nemesis never took effect
    (its injections failed, changed nothing or never came); valid otherwise."""
    params = params or {}
    requested = [str(n) for n in params.get("nemeses") or []]
    effective: dict[str, int] = {n: 0 for n in requested}
    failed: dict[str, int] = {n: 0 for n in requested}
    started: dict[str, int] = {n: 0 for n in requested}
    examples: list[Anomaly] = []
    tried: dict[str, int] = {}
    done: dict[str, int] = {}
    errors: dict[str, dict[str, int]] = {}
    for op in history:
        if op.process != NEMESIS:
            if op.type != "invoke" and not op.extra.get("final"):
                tried[op.f] = tried.get(op.f, 0) + 1
                if op.type == "ok":
                    done[op.f] = done.get(op.f, 0) + 1
                else:
                    why = op.error or op.type
                    if op.extra.get("message"):
                        why = f"{why}: {op.extra['message']}"
                    errs = errors.setdefault(op.f, {})
                    errs[why] = errs.get(why, 0) + 1
            continue
        if op.type == "invoke" or not op.f.startswith("start-"):
            continue
        name = op.f[len("start-"):]
        started[name] = started.get(name, 0) + 1
        if _failed(op):
            failed[name] = failed.get(name, 0) + 1
            if len(examples) < MAX_EXAMPLES:
                error = op.value.get("error") if isinstance(op.value, dict) else op.error
                examples.append(Anomaly("failed-injection", f"{op.f} failed: {error or 'no reason recorded'}",
                                        [op], details={"nemesis": name}))
        elif _took_effect(op):
            effective[name] = effective.get(name, 0) + 1
    never = [n for n in requested if effective.get(n, 0) == 0]
    reasons: list[str] = []
    if params.get("interrupted"):
        reasons.append("the run was interrupted: the workload, the final reads or both were cut short")
    if never:
        # Grouped by why: "partition, clock: never started: the run ended first; latency: 2 failed".
        whys: dict[str, list[str]] = {}
        for n in never:
            whys.setdefault(_why_not(started.get(n, 0), failed.get(n, 0)), []).append(n)
        reasons.append("no injection of " + ", ".join(never) + " took effect ("
                       + "; ".join(f"{', '.join(names)}: {why}" for why, names in whys.items())
                       + "): the store was not tested under the faults asked for"
                       + ("" if all(started.get(n, 0) for n in never) else
                          "; a longer --time-limit or a shorter --nemesis-interval gives each nemesis a window"))
    never_ok = sorted(f for f, n in tried.items() if n >= MIN_TRIED and not done.get(f))
    for f in never_ok:
        common, times = max(errors[f].items(), key=lambda kv: (kv[1], kv[0]))
        reasons.append(f"no client {f} succeeded ({tried[f]} tried, 0 ok; most often {common!r}, {times} times): "
                       f"the workload's {f}s were not tested")
    counts = {"injections": sum(effective.values()), "failed_injections": sum(failed.values()),
              "nemeses_never_injected": len(never), "interrupted": int(bool(params.get("interrupted"))),
              "client_ops_never_ok": len(never_ok)}
    details: dict[str, Any] = {"effective": effective, "failed": failed, "started": started,
                               "never_injected": never, "client_ops_never_ok": never_ok}
    if reasons:
        details["reason"] = "; ".join(reasons)
    return Result("campaign", "unknown" if reasons else True, counts, examples, details)
