"""The operator nemeses' pure parts (move plans, what ringctl said) and campaign topologies."""

from __future__ import annotations

import random

import pytest

from harness import topology
from harness.convergence import placement
from harness.run_options import RunOptions
from nemesis.operator import move_plan, summarize_output
from node.ring import Endpoint, TokenMetadata, make_partitioner


def _ring(owned: dict[str, list[int]]) -> dict:
    part = make_partitioner("murmur3")
    pairs = sorted((t, n) for n, ts in owned.items() for t in ts)
    return {"partitioner": part.name, "tokens": [[part.to_string(t), n, "U"] for t, n in pairs]}


def test_move_takes_the_middle_of_the_widest_range_another_member_owns() -> None:
    # n3 owns the widest range by far: (-2**62, 2**62]; whoever moves, lands in its middle.
    ring = _ring({"n1": [-(2 ** 62) - 10, 2 ** 62 + 10], "n2": [-(2 ** 62)], "n3": [2 ** 62]})
    for seed in range(8):
        plan = move_plan(ring, ["n1", "n2", "n3"], random.Random(seed))
        assert plan is not None
        mover, give, mid, new = plan
        if mover == "n3":
            continue  # then the widest other range is n1's wrap-around one
        assert int(mid) == 0
        before = {int(t) for t, o, _ in ring["tokens"] if o == mover}
        assert set(map(int, new)) == (before - {int(give)}) | {0}


def test_no_move_with_a_single_member() -> None:
    assert move_plan(_ring({"n1": [1, 2, 3]}), ["n1"], random.Random(1)) is None
    # A node that is not a live member neither moves nor gives up a range.
    assert move_plan(_ring({"n1": [1], "n2": [5]}), ["n1"], random.Random(1)) is None


def test_status_output_is_summarized_as_state_counts() -> None:
    out = ("Datacenter: dc1\n==============\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n"
           "--  Address   Load   Tokens  Owns  Host ID  Rack\n"
           "UN  127.0.0.1:1  1 KiB  16  40%  n1  rack1\nDN  127.0.0.1:2  ?  16  30%  n2  rack1\n"
           "UN  127.0.0.1:3  1 KiB  16  30%  n3  rack2\n")
    assert summarize_output(["status"], out) == "DN 1 UN 2"
    assert summarize_output(["cleanup", "ks"], '{"op": "cleanup", "dropped": {"ks.t": 3}}') == "3 partitions dropped"
    assert summarize_output(["snapshot", "--tag", "t1"], "snapshot t1 at /x/snapshots/t1\n") == "snapshot t1"
    assert summarize_output(["faults"], '{"a": false, "b": true}') == "1 fault switches on"


def test_nodes_spread_round_robin_over_datacenters_then_racks() -> None:
    locs = [topology.location(i, 2, 2) for i in range(5)]
    assert locs == [("dc1", "rack1"), ("dc2", "rack1"), ("dc1", "rack2"), ("dc2", "rack2"), ("dc1", "rack1")]
    assert topology.nodes_per_datacenter(5, 2) == {"dc1": 3, "dc2": 2}


def test_topology_keyspace_and_replica_count() -> None:
    opts = RunOptions(nodes=5, datacenters=2, racks=2, replication_factor=2)
    assert topology.replication(opts) == {"class": "NetworkTopologyStrategy", "dc1": 2, "dc2": 2}
    assert opts.checker_params()["replication_factor"] == 4
    plain = RunOptions()
    assert topology.replication(plain) == {"class": "SimpleStrategy", "replication_factor": 3}
    assert topology.placement_rf(plain) == 3


def test_placement_under_the_topology_uses_distinct_racks_in_each_datacenter() -> None:
    opts = RunOptions(nodes=5, datacenters=2, racks=2, replication_factor=2)
    part = make_partitioner("murmur3")
    rng = random.Random(4)
    nodes = [f"n{i + 1}" for i in range(5)]
    owned = {n: [part.random_token(rng) for _ in range(8)] for n in nodes}
    where = {n: Endpoint(*topology.location(i, 2, 2)) for i, n in enumerate(nodes)}
    ring = TokenMetadata(part, owned, where)
    for key, (replicas, _) in placement(ring, list(range(40)), topology.placement_rf(opts)).items():
        assert len(replicas) == 4, key
        for dc in ("dc1", "dc2"):
            racks = [where[r].rack for r in replicas if where[r].datacenter == dc]
            assert sorted(racks) == ["rack1", "rack2"], (key, replicas)


@pytest.mark.parametrize("kwargs, words", [
    ({"nodes": 5, "datacenters": 2, "replication_factor": 3}, "dc2 gets 2"),
    ({"nodes": 4, "datacenters": 2, "replication_factor": 2, "read_cl": "LOCAL_QUORUM"}, "--read-cl LOCAL_QUORUM"),
    ({"nodes": 4, "datacenters": 2, "replication_factor": 2, "nemesis": "membership"}, "membership"),
    ({"racks": 0}, "--racks must be"),
])
def test_topology_refusals_name_the_problem(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RunOptions(**kwargs).validate()


def test_file_stream_setting_reaches_node_toml_and_test_json() -> None:
    from harness import datapaths

    opts = RunOptions(file_stream_min_bytes=0)
    assert datapaths.node_membership(opts) == {"file_stream_min_bytes": 0}
    assert datapaths.recorded(opts)["node"]["file_stream_min_bytes"] == 0
    assert datapaths.node_membership(RunOptions()) == {}
    with pytest.raises(ValueError, match="--file-stream-min-bytes must be"):
        RunOptions(file_stream_min_bytes=-1).validate()
    assert datapaths.node_membership(RunOptions(load_balance=5)) == {"load_balance": True, "balance_interval": 5.0}
    with pytest.raises(ValueError, match="--load-balance must be"):
        RunOptions(load_balance=0).validate()
