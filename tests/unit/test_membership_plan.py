"""Pure pieces of membership changes and repair: transfer plans, token choice, Merkle trees."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from node.cluster.membership import NodeInfo
from node.membership_ops import build_ring, choose_tokens, future_members, natural_members, transfer_plan
from node.repair import differing_leaves, leaf_bounds, merge_leaves, split_range_at_ring
from node.ring import SimpleStrategy, TokenMetadata, make_partitioner
from node.streaming import range_contains, segments_of

P = make_partitioner("murmur3")


def _ring(nodes: dict[str, list[int]]) -> TokenMetadata:
    return TokenMetadata(P, nodes)


def test_join_plan_sends_every_gained_range_to_the_joiner_from_the_replica_losing_it() -> None:
    old = _ring({"a": [-6000], "b": [0], "c": [6000]})
    new = _ring({"a": [-6000], "b": [0], "c": [6000], "d": [3000]})
    strategy = SimpleStrategy(2)
    plan = transfer_plan(old, new, strategy)
    assert {t.target for t in plan} == {"d"}
    for t in plan:
        old_eps = old.replicas_for_token(t.right, strategy)
        new_eps = new.replicas_for_token(t.right, strategy)
        losing = [n for n in old_eps if n not in new_eps]
        assert t.sources[: len(losing)] == tuple(losing)


def test_plans_count_the_replicas_losing_each_range() -> None:
    # A join: the replica pushed out of each gained range is the one losing it, listed first.
    old = _ring({"a": [-6000], "b": [0], "c": [6000]})
    joined = transfer_plan(old, _ring({"a": [-6000], "b": [0], "c": [6000], "d": [3000]}), SimpleStrategy(2))
    assert joined and all(t.losing == 1 for t in joined)
    # A removal: the removed node is the only one losing its ranges; the survivors keep theirs.
    removed = transfer_plan(old, _ring({"a": [-6000], "c": [6000]}), SimpleStrategy(2))
    assert removed and all(t.losing == 1 and t.sources[0] == "b" for t in removed)
    assert all(set(t.sources[1:]) <= {"a", "c"} for t in removed)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(1, 3), st.integers(0, 10_000))
def test_after_a_plan_every_key_is_on_all_its_new_replicas(n: int, rf: int, seed: int) -> None:
    rng = random.Random(seed)
    tokens = {f"n{i}": [P.random_token(rng) for _ in range(3)] for i in range(n)}
    old = _ring(tokens)
    joined = dict(tokens, j=[P.random_token(rng) for _ in range(3)])
    new = _ring(joined)
    strategy = SimpleStrategy(rf)
    plan = transfer_plan(old, new, strategy)
    for _ in range(200):
        tok = P.random_token(rng)
        holders = set(old.replicas_for_token(tok, strategy))
        holders |= {t.target for t in plan if range_contains(t.left, t.right, tok)}
        assert set(new.replicas_for_token(tok, strategy)) <= holders


def test_natural_and_future_members() -> None:
    members = {
        "a": NodeInfo("a", tokens=[1], status="NORMAL"),
        "b": NodeInfo("b", tokens=[2], status="LEAVING"),
        "c": NodeInfo("c", tokens=[3], status="JOINING"),
        "d": NodeInfo("d", tokens=[4], status="NORMAL"),
        "e": NodeInfo("e", tokens=[5], status="LEFT"),
    }
    assert set(natural_members(members, {"d": "REMOVING"})) == {"a", "b", "d"}
    assert set(future_members(members, {"d": "REMOVING"})) == {"a", "c"}
    assert set(natural_members(members, {"d": "REMOVED"})) == {"a", "b"}
    assert build_ring(P, members, {"a": [10]}).tokens_of("a") == [10]


def test_choose_tokens_splits_the_heaviest_nodes_ranges() -> None:
    ring = _ring({"a": [-(2**62)], "b": [0], "c": [2**62]})
    tokens = choose_tokens(P, ring, {"a": 1, "b": 1, "c": 100}, 2, random.Random(1))
    # c owns (0, 2**62]; its midpoint first, then the midpoint of one of the halves.
    assert 2**61 in tokens
    assert all(0 < t <= 2**62 for t in tokens)


def test_merkle_diff_finds_exactly_the_changed_leaves() -> None:
    leaves = [bytes([i]) * 16 for i in range(16)]
    other = list(leaves)
    other[3] = b"x" * 16
    other[12] = b"y" * 16
    assert differing_leaves(leaves, other) == [3, 12]
    assert differing_leaves(leaves, leaves) == []


@settings(max_examples=50, deadline=None)
@given(st.integers(-(2**63) + 1, 2**63 - 1), st.integers(-(2**63) + 1, 2**63 - 1), st.integers(0, 6))
def test_leaf_slices_tile_the_range(left: int, right: int, depth: int) -> None:
    slices = [leaf_bounds(P, left, right, depth, i) for i in range(1 << depth)]
    assert slices[0][0] == left and slices[-1][1] == right
    for a, b in zip(slices, slices[1:]):
        assert a[1] == b[0]
    assert merge_leaves(P, left, right, depth, list(range(1 << depth))) == [(left, right)]


def test_split_range_at_ring_and_segments() -> None:
    ring = _ring({"a": [-100], "b": [0], "c": [100]})
    assert split_range_at_ring(ring, P, -50, 150) == [(-50, 0), (0, 100), (100, 150)]
    assert split_range_at_ring(ring, P, 150, -50) == [(150, -100), (-100, -50)]
    assert segments_of([(5, 1)]) == [(5, None), (None, 1)]
    assert range_contains(5, 1, 7) and range_contains(5, 1, 1) and not range_contains(5, 1, 3)
