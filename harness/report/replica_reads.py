"""What each replica of a finding's key held when the harness read the replicas directly.

The acknowledgement table under a finding is the coordinator's record at the time of each write
(history fields ``replicas``, ``acked``); it cannot say whether a replica that had not answered
yet applied the write later, nor show a timed-out write's fate. The convergence passes read
every replica of every key without coordination (``replicas.jsonl``, harness/convergence.py),
so the report puts those reads of the finding's key beside it: per pass, what each replica held
(a register's value and timestamp, unique per key in the register workload, so the value names
the write; for a set, its element count and which of the finding's elements it holds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from checkers.convergence import SNAPSHOT_FILE, replica_holds

# Keys given per-replica reads in one report: the findings shown are capped per checker, and a
# key's reads are a few small objects per pass, so this keeps a report with many findings small.
MAX_KEYS = 200
# A set finding's elements looked up on each replica (its ops are capped at 50 as well).
MAX_ELEMENTS = 20
PASS_ORDER = ("before", "read-repair", "after")


def key_id(key: Any) -> str:
    """A key's identity across the history, results.json and replicas.jsonl (compact JSON)."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _elements_of(finding: dict[str, Any]) -> list[int]:
    """The set elements a finding's add operations name (the ones to look for on replicas)."""
    out: list[int] = []
    for op in finding.get("ops") or []:
        if isinstance(op, dict) and op.get("f") == "add" and isinstance(op.get("value"), int) and op["value"] not in out:
            out.append(op["value"])
    return out[:MAX_ELEMENTS]


def attach(run_dir: Path, checkers: list[dict[str, Any]]) -> dict[str, Any]:
    """Mark each finding whose key the replicas were read for (``replica_reads``: the key's id)
    and return those reads: ``{"passes": [...], "keys": {id: {"replicas": [...], "reads":
    {pass: {node: holds}}}}}``; empty when the run has no replicas.jsonl."""
    path = Path(run_dir) / SNAPSHOT_FILE
    if not path.is_file() or not path.resolve().is_relative_to(Path(run_dir).resolve()):
        return {}
    wanted: dict[str, list[int]] = {}
    findings: list[dict[str, Any]] = []
    for c in checkers:
        for a in list(c.get("anomalies") or []) + list(c.get("expected") or []):
            if a.get("key") is None:
                continue
            kid = key_id(a["key"])
            if kid not in wanted:
                if len(wanted) >= MAX_KEYS:
                    continue
                wanted[kid] = []
            wanted[kid].extend(x for x in _elements_of(a) if x not in wanted[kid])
            findings.append(a)
    if not wanted:
        return {}
    spec: dict[str, Any] = {}
    passes: list[str] = []
    keys: dict[str, dict[str, Any]] = {}
    with path.open("rb") as fh:
        for line in fh:
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line of an interrupted run: the reads before it still count
            if not isinstance(rec, dict):
                continue
            if rec.get("type") == "pass":
                spec = rec.get("workload") or spec
                if rec.get("pass") not in passes:
                    passes.append(rec.get("pass"))
                continue
            if rec.get("type") != "replica" or "key" not in rec:
                continue
            kid = key_id(rec["key"])
            if kid not in wanted:
                continue
            entry = keys.setdefault(kid, {"replicas": list(rec.get("replicas") or []), "reads": {}})
            entry["reads"].setdefault(rec.get("pass"), {})[rec.get("node")] = replica_holds(rec, spec or {}, wanted[kid])
    for a in findings:
        if key_id(a["key"]) in keys:
            a["replica_reads"] = key_id(a["key"])
    order = [p for p in PASS_ORDER if p in passes] + [p for p in passes if p not in PASS_ORDER]
    return {"passes": order, "keys": keys} if keys else {}
