"""Misplaced data: a node that is no replica of a key holds cells of it.

Reads only ever ask a key's replicas, so a repair, stream, hint or read repair that writes a
range onto a wrong node leaves data no checker reading through the store can see (and the node's
own range is not harmed). The harness's ``after`` pass reads every key on every node that is not
one of its replicas too (``nonreplica`` records of ``replicas.jsonl``, harness/convergence.py;
the same localread, which never returns hints: they live in their own files). Such a node must
hold nothing for the key unless some ring of the run made it a replica: a join, decommission,
removenode or move leaves the data of a range behind on the nodes that lost it (until a cleanup,
as in Cassandra), and a pending replica takes writes before it owns the range. The checker knows
the run's rings only when no such change ran: then the ring every pass recorded (the same in
each) is the only one the run had, and a node that is no replica of a key there (by
checkers/placement.py's oracle, and by the harness's own placement) holding a cell of it is a
``misplaced-data`` anomaly. When the rings are not known (a membership change or a move ran, a
pass has no ring, the passes' rings differ) nothing is judged: ``misplaced_judged`` says 0 and
``misplaced_unjudged`` says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from checkers import placement
from checkers.result import Anomaly
from harness.history import Op, nemesis_steps

KIND = "misplaced-data"
# A history written before nemesis steps said whether they changed the ring (``ring_change`` in a
# completion's fields, nemesis/faults.py's Event), or by another tool: steps whose names say they
# change the ring's tokens or members count as changes.
RING_CHANGING = ("membership", "move", "join", "decommission", "removenode", "bootstrap")
# Cells named per finding.
MAX_CELLS = 3


def ring_changes(history: Iterable[Op]) -> list[str]:
    """The nemesis steps that may have changed the ring: those whose completion says so
    (``ring_change``), and in a history whose steps never say, those named for a ring change
    (an ``action`` of ``none`` changed nothing)."""
    steps = list(nemesis_steps(history))
    if any("ring_change" in op.extra for op, _t0, _v in steps):
        return [op.f for op, _t0, _v in steps if op.extra.get("ring_change") is True]
    return [op.f for op, _t0, v in steps
            if any(w in op.f for w in RING_CHANGING) and (op.extra.get("action") or v.get("action")) != "none"]


def _ring_of(header: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    info = header.get("placement") or {}
    if not info or info.get("error") or info.get("ring_changed") or not info.get("tokens"):
        return None
    return info.get("partitioner", "murmur3"), tuple(sorted((str(t), str(o)) for t, o in info["tokens"]))


def unknown_rings(headers: Mapping[str, Mapping[str, Any]], history: list[Op]) -> str | None:
    """Why the run's rings cannot be known, or None when every pass saw the one ring it had."""
    changes = ring_changes(history)
    if changes:
        return f"the ring changed during the run ({', '.join(sorted(set(changes)))}): its earlier rings are not recorded"
    rings = {label: _ring_of(h) for label, h in headers.items()}
    if not rings or any(r is None for r in rings.values()):
        return "a pass recorded no stable ring (" + ", ".join(sorted(k for k, r in rings.items() if r is None)) + ")"
    if len(set(rings.values())) > 1:
        return "the passes recorded different rings"
    return None


def check_pass(headers: Mapping[str, Mapping[str, Any]], records: Iterable[Mapping[str, Any]],
               history: list[Op], label: str = "after") -> tuple[list[Anomaly], dict[str, Any]]:
    """Judge the ``nonreplica`` records of pass ``label``: (anomalies, counts); ``counts`` has
    ``misplaced_judged`` (1 when judged), the reads and what the non-replicas held."""
    counts: dict[str, Any] = {"misplaced_judged": 0, "nonreplica_reads": 0, "nonreplica_held": 0,
                              "nonreplica_excused": 0}
    header = headers.get(label) or {}
    info = header.get("nonreplica")
    if not isinstance(info, dict):
        return [], {**counts, "misplaced_unjudged": f"the {label} pass read no non-replica"}
    why = unknown_rings(headers, history)
    if why is not None:
        return [], {**counts, "misplaced_unjudged": why}
    counts["misplaced_judged"] = 1
    counts["nonreplica_reads"] = int(info.get("reads") or 0)
    place = header["placement"]
    part = place.get("partitioner", "murmur3")
    ring = [(placement.parse_token(part, t), owner) for t, owner in place["tokens"]]
    locations = {n: (loc[0], loc[1]) for n, loc in (place.get("locations") or {}).items()}
    replication = place.get("replication") or {}
    anomalies: list[Anomaly] = []
    for rec in records:
        if rec.get("type") != "nonreplica" or rec.get("pass") != label:
            continue
        cells = rec.get("cells") or []
        if not cells and rec.get("partition_tombstone") is None:
            continue
        counts["nonreplica_held"] += 1
        key = placement.json_key(rec["key"])
        token = placement.key_token(part, key)
        node = rec["node"]
        replicas = set(rec.get("replicas") or [])
        if token is not None:
            replicas |= placement.expected_replicas(ring, locations, replication, token)
        if token is None or node in replicas:
            counts["nonreplica_excused"] += 1
            continue
        shown = ", ".join(
            f"{name}={'(tombstone)' if tomb else repr(value)} at {ts}" for name, value, ts, tomb, _exp in cells[:MAX_CELLS])
        if rec.get("partition_tombstone") is not None:
            shown = ", ".join(x for x in (shown, f"a partition tombstone at {rec['partition_tombstone']}") if x)
        more = f" and {len(cells) - MAX_CELLS} more cell(s)" if len(cells) > MAX_CELLS else ""
        anomalies.append(Anomaly(
            KIND,
            f"key {key!r}: node {node}, which no ring of the run made a replica of it (its replicas are "
            f"{sorted(replicas)}), holds {shown}{more} in the {label} pass: something (a repair, a stream, a "
            f"hint, read repair) wrote the key where no placement puts it",
            [], key, {"node": node, "replicas": sorted(replicas), "cells": len(cells), "pass": label}))
    return anomalies, counts
