"""Replica placement as a test oracle: which nodes must hold each key, computed apart from node/ring.py.

Every node and the harness's own per-replica snapshots place keys with ``node/ring.py``; a bug
there (a node counted twice, a rack rule broken) makes them all agree on the wrong replicas, so
reads and writes stay consistent and no other checker can see it. This module recomputes each
key's replicas from the raw ring a node reports (the ``ring`` admin op's token list, the
``status`` op's datacenter and rack per node) and the keyspace's replication map, with its own
ring walk, and compares them with what the node answers (``getendpoints``) and with the replicas
the harness read. A mismatch is a ``wrong-placement`` anomaly naming the key, the expected and the
reported replicas.

The rules, as Cassandra's strategies state them:

* SimpleStrategy: walk the ring clockwise from the first token >= the key's token (wrapping) and
  take the next ``replication_factor`` *distinct* nodes.
* NetworkTopologyStrategy: per datacenter ``rf`` distinct nodes (at most the nodes it has); walking
  clockwise, a node on a rack not yet used is taken; a node on a used rack is set aside until
  every rack of its datacenter holds a replica, then the set-aside ones fill up, in ring order.

Replicas are compared as sets (the primary-first order is the node's business).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from checkers.result import Anomaly
from node.murmur3 import murmur3_token

# Anomaly kind for a key whose replicas differ from the oracle's.
KIND = "wrong-placement"


def key_token(partitioner: str, key: Any) -> Any:
    """The token of a client key under ``partitioner`` (murmur3, random, byteordered); None if unknown."""
    if isinstance(key, bytes):
        raw = key
    elif isinstance(key, str):
        raw = key.encode("utf-8")
    elif isinstance(key, int) and not isinstance(key, bool):
        raw = str(key).encode("ascii")
    else:
        return None
    if partitioner == "murmur3":
        return murmur3_token(raw)
    if partitioner == "random":
        return abs(int.from_bytes(hashlib.sha1(raw).digest(), "big", signed=True))
    if partitioner == "byteordered":
        return raw
    return None


def parse_token(partitioner: str, text: str) -> Any:
    """A token as the ring admin op writes it: decimal for hashes, hex for byteordered."""
    return bytes.fromhex(text) if partitioner == "byteordered" else int(text)


def _clockwise(ring: Sequence[tuple[Any, str]], token: Any) -> list[str]:
    """Owners of the ring's tokens in walk order, starting at the first token >= ``token``."""
    toks = [t for t, _ in ring]
    start = bisect.bisect_left(toks, token) % len(ring)
    return [ring[(start + i) % len(ring)][1] for i in range(len(ring))]


def expected_replicas(ring: Sequence[tuple[Any, str]], locations: Mapping[str, tuple[str, str]],
                      replication: Mapping[str, Any], token: Any) -> set[str]:
    """The set of nodes that must hold ``token``: ``ring`` is (token, owner) pairs in any order,
    ``locations`` each node's (datacenter, rack), ``replication`` the keyspace's map."""
    if not ring:
        return set()
    walk = _clockwise(sorted(ring), token)
    cls = str(replication.get("class", "SimpleStrategy")).rsplit(".", 1)[-1]
    if cls == "SimpleStrategy":
        rf = int(replication.get("replication_factor", 1))
        picked: list[str] = []
        for node in walk:
            if node not in picked:
                picked.append(node)
            if len(picked) == rf:
                break
        return set(picked)
    out: set[str] = set()
    owners = set(walk)
    for dc, rf in replication.items():
        if dc in ("class", "replication_factor"):
            continue
        members = {n for n in owners if locations.get(n, ("dc1", "rack1"))[0] == dc}
        racks = {locations.get(n, ("dc1", "rack1"))[1] for n in members}
        need = min(int(rf), len(members))
        taken: list[str] = []
        used_racks: set[str] = set()
        aside: list[str] = []
        for node in walk:
            if len(taken) >= need:
                break
            if node not in members or node in taken or node in aside:
                continue
            rack = locations.get(node, ("dc1", "rack1"))[1]
            if rack not in used_racks:
                used_racks.add(rack)
                taken.append(node)
                if used_racks == racks:
                    # Every rack holds one: the nodes set aside so far come next, oldest first.
                    while aside and len(taken) < need:
                        taken.append(aside.pop(0))
            elif used_racks == racks:
                taken.append(node)
            else:
                aside.append(node)
        out.update(taken)
    return out


def check_pass(header: Mapping[str, Any], replica_records: Iterable[Mapping[str, Any]]) -> tuple[list[Anomaly], dict[str, int]]:
    """Compare one snapshot pass's reported placement with the oracle's: (anomalies, counts).

    ``header["placement"]`` holds the raw ring (``partitioner``, ``tokens`` as [token, owner],
    ``locations`` as {node: [dc, rack]}), the keyspace's ``replication`` map and per key what the
    node answered to getendpoints (``endpoints``: [[key, [node, ...]], ...]); the replica records
    carry the replicas the harness read. A pass whose ring moved while it was read is not judged."""
    info = header.get("placement") or {}
    counts = {"placement_keys": 0, "placement_wrong": 0}
    if not info or info.get("error") or info.get("ring_changed"):
        return [], counts
    part = info.get("partitioner", "murmur3")
    try:
        ring = [(parse_token(part, t), owner) for t, owner in info.get("tokens") or []]
    except ValueError:
        return [], counts
    locations = {n: (loc[0], loc[1]) for n, loc in (info.get("locations") or {}).items()}
    replication = info.get("replication") or {}
    reported: dict[str, dict[Any, list[str]]] = {}
    for key, nodes in info.get("endpoints") or []:
        reported.setdefault("getendpoints", {})[json_key(key)] = list(nodes)
    for rec in replica_records:
        if rec.get("type") == "replica" and isinstance(rec.get("replicas"), list):
            reported.setdefault("snapshot", {}).setdefault(json_key(rec["key"]), list(rec["replicas"]))
    anomalies: list[Anomaly] = []
    keys = sorted(set().union(*(set(v) for v in reported.values())) if reported else set(), key=repr)
    for key in keys:
        token = key_token(part, key)
        if token is None:
            continue
        counts["placement_keys"] += 1
        want = expected_replicas(ring, locations, replication, token)
        for source, per_key in sorted(reported.items()):
            got = per_key.get(key)
            if got is None:
                continue
            problems = []
            if len(set(got)) != len(got):
                problems.append("a node listed twice")
            if set(got) != want:
                problems.append("not the nodes the ring and the strategy give")
            if problems:
                counts["placement_wrong"] += 1
                what = "getendpoints on " + str(info.get("node")) if source == "getendpoints" else "the snapshot's placement"
                anomalies.append(Anomaly(
                    KIND,
                    f"key {key!r}: {what} says replicas {got}, but ring and {replication.get('class')} give "
                    f"{sorted(want)} ({'; '.join(problems)})",
                    [], key, {"expected": sorted(want), "reported": got, "source": source, "pass": header.get("pass")}))
                break
    return anomalies, counts


def json_key(key: Any) -> Any:
    """A hashable key (JSON turns bytes keys into lists)."""
    return tuple(key) if isinstance(key, list) else key
