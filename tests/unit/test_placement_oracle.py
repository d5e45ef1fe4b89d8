"""checkers/placement.py: the independent placement oracle on hand-made rings, against node/ring.py
on seeded random rings, and wired into the convergence checker (a planted wrong placement is flagged)."""

from __future__ import annotations

import random

from checkers import convergence, placement
from node.murmur3 import murmur3_token
from node.ring import Endpoint, Murmur3Partitioner, NetworkTopologyStrategy, SimpleStrategy, TokenMetadata

SIMPLE3 = {"class": "SimpleStrategy", "replication_factor": 3}


def test_simple_strategy_takes_distinct_nodes_clockwise_and_wraps() -> None:
    ring = [(10, "a"), (20, "a"), (30, "b"), (40, "b"), (50, "c"), (60, "d")]
    # Token 15 belongs to (10, 20]: a owns 20 and 10 is a again further on; distinct: a, b, c.
    assert placement.expected_replicas(ring, {}, SIMPLE3, 15) == {"a", "b", "c"}
    # Past the last token the walk wraps to the first: d owns nothing there, a first.
    assert placement.expected_replicas(ring, {}, SIMPLE3, 61) == {"a", "b", "c"}
    assert placement.expected_replicas(ring, {}, SIMPLE3, 55) == {"d", "a", "b"}
    # A token on the ring belongs to its own owner's range.
    assert placement.expected_replicas(ring, {}, SIMPLE3, 60) == {"d", "a", "b"}
    # RF above the node count gives every node once.
    assert placement.expected_replicas(ring, {}, {"class": "SimpleStrategy", "replication_factor": 9}, 0) == {"a", "b", "c", "d"}


def test_network_topology_spreads_over_racks_before_reusing_one() -> None:
    ring = [(10, "a"), (20, "b"), (30, "c"), (40, "d"), (50, "e")]
    where = {"a": ("dc1", "r1"), "b": ("dc1", "r1"), "c": ("dc1", "r2"), "d": ("dc2", "r1"), "e": ("dc1", "r1")}
    nts = {"class": "NetworkTopologyStrategy", "dc1": 2, "dc2": 1}
    # From 10: a (r1), b set aside (r1 used), c (r2) -> dc1 done; dc2: d.
    assert placement.expected_replicas(ring, where, nts, 5) == {"a", "c", "d"}
    # dc1 wants 3 over 2 racks: a, c, then the set-aside b before e (ring order).
    assert placement.expected_replicas(ring, where, {"class": "NetworkTopologyStrategy", "dc1": 3}, 5) == {"a", "c", "b"}
    # A datacenter with fewer nodes than its RF gives what it has.
    assert placement.expected_replicas(ring, where, {"class": "NetworkTopologyStrategy", "dc2": 3}, 5) == {"d"}


def test_the_oracle_agrees_with_node_ring_on_seeded_random_rings() -> None:
    rng = random.Random(7)
    part = Murmur3Partitioner()
    for _ in range(60):
        nodes = [f"n{i}" for i in range(rng.randint(1, 7))]
        where = {n: Endpoint(rng.choice(["dc1", "dc2"]), rng.choice(["r1", "r2", "r3"])) for n in nodes}
        tokens = {n: [rng.randrange(-(1 << 63) + 1, 1 << 63) for _ in range(rng.randint(1, 8))] for n in nodes}
        meta = TokenMetadata(part, tokens, where)
        flat = [(t, n) for n, ts in tokens.items() for t in ts]
        locs = {n: (e.datacenter, e.rack) for n, e in where.items()}
        for strategy in (SimpleStrategy(rng.randint(1, 4)), NetworkTopologyStrategy.of({"dc1": rng.randint(1, 3), "dc2": rng.randint(0, 2)})):
            for k in range(20):
                key = f"key-{k}"
                want = placement.expected_replicas(flat, locs, strategy.describe(), murmur3_token(key.encode()))
                assert want == set(meta.endpoints_for(key.encode(), strategy)), (tokens, where, strategy, key)


def test_key_tokens_follow_each_partitioner() -> None:
    assert placement.key_token("murmur3", "k") == murmur3_token(b"k")
    assert placement.key_token("murmur3", 12) == murmur3_token(b"12")
    assert placement.key_token("byteordered", "ab") == b"ab"
    assert placement.key_token("random", "k") >= 0
    assert placement.key_token("nope", "k") is None


def _truth(ring: list[tuple[int, str]], keys: list[str]) -> dict[str, list[str]]:
    meta = TokenMetadata(Murmur3Partitioner(), {n: [t for t, m in ring if m == n] for _, n in ring})
    return {k: list(meta.endpoints_for(k.encode(), SimpleStrategy(3))) for k in keys}


RING = [(-(1 << 62), "a"), (-(1 << 61), "a"), (0, "b"), (1 << 60, "c"), (1 << 61, "d"), (1 << 62, "b")]
KEYS = [f"k{i}" for i in range(12)]


def _placement_anomalies(ring: list[tuple[int, str]], endpoints: dict[str, list[str]], changed: bool = False) -> list:
    header = {"type": "pass", "pass": "after", "hints_drained": True, "read_repair": "BLOCKING",
              "workload": {"model": "register", "column": "v"},
              "placement": {"node": "a", "partitioner": "murmur3", "replication": SIMPLE3, "ring_changed": changed,
                            "tokens": [[str(t), n] for t, n in ring], "locations": {},
                            "endpoints": [[k, v] for k, v in endpoints.items()]}}
    recs = [header] + [{"type": "replica", "pass": "after", "key": k, "node": n, "replicas": v, "range": [],
                        "cells": [], "partition_tombstone": None} for k, v in endpoints.items() for n in v]
    res = convergence.check([], {"replica_snapshots": recs})
    return [a for a in res.anomalies if a.kind == placement.KIND]


def test_the_true_placement_is_no_anomaly() -> None:
    assert _placement_anomalies(RING, _truth(RING, KEYS)) == []


def test_a_planted_wrong_placement_is_flagged_with_the_key_and_both_replica_lists() -> None:
    wrong = _truth(RING, KEYS)
    good = wrong["k3"]
    # The bug of a walk that counts a node's second vnode as another replica: a node twice.
    wrong["k3"] = [good[0], good[0], good[1]]
    found = _placement_anomalies(RING, wrong)
    assert [a.key for a in found] == ["k3"]
    assert found[0].details["expected"] == sorted(good) and found[0].details["reported"] == wrong["k3"]
    # A node the ring does not give (distinct, RF of them, but the wrong one) is flagged too.
    other = _truth(RING, KEYS)
    missing = next(n for n in "abcd" if n not in other["k5"])
    other["k5"] = other["k5"][:2] + [missing]
    assert [a.key for a in _placement_anomalies(RING, other)] == ["k5"]


def test_a_pass_whose_ring_moved_while_read_is_not_judged() -> None:
    wrong = _truth(RING, KEYS)
    wrong["k1"] = wrong["k1"][:1] * 3
    assert _placement_anomalies(RING, wrong, changed=True) == []
