"""Misplaced data: a node that is no replica of a key holds cells of it.

Reads only ever ask a key's replicas, so a repair, stream, hint or read repair that writes a
range onto a wrong node leaves data no checker reading through the store can see (and the node's
own range is not harmed). The harness's ``after`` pass reads every key on every node that is not
one of its replicas too (``nonreplica`` records of ``replicas.jsonl``, harness/convergence.py;
the same localread, which never returns hints: they live in their own files). Such a node must
hold nothing for the key unless some ring of the run made it a replica: a join, decommission,
removenode or move leaves the data of a range behind on the nodes that lost it (until a cleanup,
as in Cassandra), and a pending replica takes writes before it owns the range. So the checker
needs every ring of the run. Without a ring change it is the ring every pass recorded (the same
in each). With changes, the rings are replayed from the ring recorded before the workload
(test.json's ``ring_at_start``) through each change the nemesis recorded (a completion with
``ring_change``: a join's tokens, the node a decommission or removenode took out, a move's new
tokens), and the last must be the ring the passes recorded. A node that no ring of the run makes
a replica of a key (by checkers/placement.py's oracle, and by the harness's own placement)
holding a cell of it is a ``misplaced-data`` anomaly. When the rings are not known (no first
ring, a change that failed part way or did not say what it did, a replay that does not end at
the passes' ring, a pass without a stable ring, passes that differ) nothing is judged:
``misplaced_judged`` says 0 and ``misplaced_unjudged`` says why.
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


def _final_ring(headers: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, tuple[tuple[str, str], ...]] | None, str | None]:
    """The one ring every pass recorded, or why there is none."""
    rings = {label: _ring_of(h) for label, h in headers.items()}
    if not rings or any(r is None for r in rings.values()):
        return None, "a pass recorded no stable ring (" + ", ".join(sorted(k for k, r in rings.items() if r is None)) + ")"
    if len(set(rings.values())) > 1:
        return None, "the passes recorded different rings"
    return next(iter(rings.values())), None


def replay_rings(start: Mapping[str, Any] | None, history: list[Op]) -> tuple[list[dict[str, str]], dict[str, Any], str | None]:
    """Every ring of the run, from ``start`` (test.json's ``ring_at_start``: the ring before the
    workload) through each ring change the nemesis recorded, in order: (rings as token → owner,
    the nodes' locations, None) — or ([], {}, why) when a change cannot be replayed (one failed
    part way, or did not say what it did). A join says its tokens and location, a decommission
    and a removenode the node that left, a move the node and its new tokens
    (nemesis/membership.py, nemesis/operator.py)."""
    if not isinstance(start, Mapping) or start.get("error") or not start.get("tokens"):
        why = start.get("error") if isinstance(start, Mapping) and start.get("error") else "not recorded"
        return [], {}, f"the ring before the workload is {why}"
    ring = {str(t): str(o) for t, o in start["tokens"]}
    locations: dict[str, Any] = dict(start.get("locations") or {})
    rings = [dict(ring)]
    for op, _t0, v in nemesis_steps(history):
        if op.extra.get("ring_change") is not True:
            continue
        action = op.extra.get("action")
        node = v.get("node")
        if op.type != "info" or v.get("error") or not isinstance(node, str):
            return [], {}, f"a ring change ({op.f} {action or ''}) failed or stopped part way: the rings it left are not known"
        if action == "join" or action == "move":
            if not isinstance(v.get("tokens"), list) or not v["tokens"]:
                return [], {}, f"a {action} of {node} did not record its tokens"
            ring = {t: o for t, o in ring.items() if o != node}
            ring.update({str(t): node for t in v["tokens"]})
            if action == "join" and isinstance(v.get("location"), list) and None not in v["location"]:
                locations[node] = v["location"]
        elif action in ("decommission", "removenode"):
            ring = {t: o for t, o in ring.items() if o != node}
        else:
            return [], {}, f"a ring change the checker cannot replay ({op.f} {action})"
        rings.append(dict(ring))
    return rings, locations, None


def unknown_rings(headers: Mapping[str, Mapping[str, Any]], history: list[Op],
                  start: Mapping[str, Any] | None = None) -> tuple[list[dict[str, str]], dict[str, Any], str | None]:
    """Every ring the run had, with the nodes' locations, and None — or ([], {}, why) when they
    cannot be known. Without a ring change the passes' one ring is the only one; with changes
    the rings are replayed from the first (:func:`replay_rings`), and the last must be the one
    the passes recorded."""
    final, why = _final_ring(headers)
    if final is None:
        return [], {}, why
    changes = ring_changes(history)
    if not changes:
        return [dict(final[1])], {}, None
    what = f"the ring changed during the run ({', '.join(sorted(set(changes)))})"
    rings, locations, why = replay_rings(start, history)
    if why is not None:
        return [], {}, f"{what}: {why}"
    if tuple(sorted(rings[-1].items())) != final[1]:
        return [], {}, f"{what}: replaying its changes does not give the ring the passes recorded"
    return rings, locations, None


def check_pass(headers: Mapping[str, Mapping[str, Any]], records: Iterable[Mapping[str, Any]],
               history: list[Op], label: str = "after",
               start: Mapping[str, Any] | None = None) -> tuple[list[Anomaly], dict[str, Any]]:
    """Judge the ``nonreplica`` records of pass ``label``: (anomalies, counts); ``counts`` has
    ``misplaced_judged`` (1 when judged), ``misplaced_rings`` (the rings judged against), the
    reads and what the non-replicas held. ``start`` is the ring before the workload (test.json's
    ``ring_at_start``), needed only when the ring changed."""
    counts: dict[str, Any] = {"misplaced_judged": 0, "nonreplica_reads": 0, "nonreplica_held": 0,
                              "nonreplica_excused": 0}
    header = headers.get(label) or {}
    info = header.get("nonreplica")
    if not isinstance(info, dict):
        return [], {**counts, "misplaced_unjudged": f"the {label} pass read no non-replica"}
    run_rings, earlier_locations, why = unknown_rings(headers, history, start)
    if why is not None:
        return [], {**counts, "misplaced_unjudged": why}
    counts["misplaced_judged"] = 1
    counts["misplaced_rings"] = len(run_rings)
    counts["nonreplica_reads"] = int(info.get("reads") or 0)
    place = header["placement"]
    part = place.get("partitioner", "murmur3")
    rings = [[(placement.parse_token(part, t), owner) for t, owner in r.items()] for r in run_rings]
    locations = {n: (loc[0], loc[1]) for n, loc in {**earlier_locations, **(place.get("locations") or {})}.items()}
    replication = place.get("replication") or {}
    if str(replication.get("class", "SimpleStrategy")).rsplit(".", 1)[-1] != "SimpleStrategy":
        unplaced = sorted({o for r in run_rings for o in r.values()} - set(locations))
        if unplaced:
            return [], {**counts, "misplaced_judged": 0, "misplaced_rings": 0,
                        "misplaced_unjudged": f"the locations of {', '.join(unplaced)} are not recorded"}
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
            for ring in rings:
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
