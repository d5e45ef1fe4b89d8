"""What the nemeses checked themselves: the answers of the admin nemesis's scratch table and the
commit failure policies the disk nemesis judged.

Two nemesis steps compare what the store did with what it must do, and record a mismatch in the
history rather than raise: the admin nemesis's scratch table (nemesis/housekeeping.py) reads back
at QUORUM what it wrote at QUORUM (``start-admin``'s ``scratch.wrong``), and the disk nemesis
holds a node whose commit log disk failed to its ``commit_failure_policy`` (``stop-disk``'s
``policies``: ``held`` false when a ``stop`` node kept taking writes, a ``die`` node kept running,
an ``ignore`` node stopped). Either is a store bug, so either makes the run invalid, with one
exception: under the clock nemesis last-write-wins and TTL expiry follow skewed clocks by design,
so scratch-table mismatches are then reported but do not count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.result import Anomaly, Result, example_limit
from harness.history import NEMESIS, Op


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Invalid when a scratch-table answer differed from what was written (unless clocks were
    skewed) or a node did not do what its commit failure policy says; valid otherwise."""
    params = params or {}
    skewed = "clock" in (params.get("nemeses") or [])
    limit = example_limit(params)
    anomalies: list[Anomaly] = []
    counts = {"scratch-tables": 0, "scratch-wrong-answer": 0, "policy-windows": 0, "policy-not-held": 0}
    excused = 0
    for op in history:
        if op.process != NEMESIS or op.type == "invoke" or not isinstance(op.value, dict):
            continue
        if op.f == "start-admin" and isinstance(op.value.get("scratch"), dict) and op.value["scratch"]:
            scratch = op.value["scratch"]
            counts["scratch-tables"] += 1
            for wrong in scratch.get("wrong") or []:
                if skewed:
                    excused += 1
                    continue
                counts["scratch-wrong-answer"] += 1
                if len(anomalies) < limit:
                    anomalies.append(Anomaly("scratch-wrong-answer", f"{scratch.get('table')}: {wrong}", [op],
                                             details={"table": scratch.get("table"), "via": scratch.get("via")}))
        elif op.f == "stop-disk" and isinstance(op.value.get("policies"), dict):
            for node, verdict in op.value["policies"].items():
                counts["policy-windows"] += 1
                if isinstance(verdict, dict) and verdict.get("held") is False:
                    counts["policy-not-held"] += 1
                    if len(anomalies) < limit:
                        anomalies.append(Anomaly(
                            "policy-not-held",
                            f"{node} under commit_failure_policy = {verdict.get('policy')}: "
                            f"{verdict.get('seen')}; the policy says: {verdict.get('expected')}",
                            [op], details={"node": node, **verdict}))
    details: dict[str, Any] = {}
    if excused:
        details["excused"] = (f"{excused} scratch-table answers differed under the clock nemesis "
                              "(last-write-wins and TTLs follow skewed clocks by design)")
    bad = counts["scratch-wrong-answer"] + counts["policy-not-held"]
    return Result("nemesis-checks", not bad, counts, anomalies, details)
