"""The harness side of the convergence check: where each key's replicas are, what a pass records."""

from __future__ import annotations

from harness import convergence
from harness.workloads import WorkloadSettings, make_workload
from node.protocol import key_bytes
from node.ring import SimpleStrategy, TokenMetadata, make_partitioner


def test_placement_gives_each_key_its_replicas_and_the_range_holding_its_token() -> None:
    part = make_partitioner("murmur3")
    ring = TokenMetadata(part, {"n1": [-(2**62)], "n2": [0], "n3": [2**62], "n4": [2**63 - 10]})
    where = convergence.placement(ring, [0, 1, "k", 99], 3)
    toks = ring.sorted_tokens
    for key, (replicas, (left, right)) in where.items():
        assert tuple(replicas) == ring.endpoints_for(key_bytes(key), SimpleStrategy(3))
        t = part.token(key_bytes(key))
        lo, hi = part.from_string(left), part.from_string(right)
        assert hi in toks and lo in toks
        assert (lo < t <= hi) if lo < hi else (t > lo or t <= hi)  # the first range wraps


def test_the_spec_tells_the_checker_each_workload_cells() -> None:
    s = WorkloadSettings(5, "QUORUM", "QUORUM")
    assert convergence.spec_of(make_workload("register", s)) == {"model": "register", "column": "v"}
    assert convergence.spec_of(make_workload("lww-rmw", s)) == {"model": "counter", "column": "n"}
    assert convergence.spec_of(make_workload("set", s))["element_prefix"] == "e"
