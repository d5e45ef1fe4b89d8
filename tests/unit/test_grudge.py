"""Structural properties of each partition shape, for 3, 5 and 7 nodes and many seeds."""

from __future__ import annotations

import random

import pytest

from nemesis import grudge as g

SIZES = [3, 5, 7]
SEEDS = range(20)


def nodes_of(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def sees(grudge: g.Grudge, node: str, nodes: list[str]) -> set[str]:
    return set(nodes) - grudge.get(node, set())


def components(grudge: g.Grudge, nodes: list[str]) -> list[set[str]]:
    """The groups of a complete grudge: nodes that see exactly the same set."""
    groups: dict[frozenset[str], set[str]] = {}
    for node in nodes:
        groups.setdefault(frozenset(sees(grudge, node, nodes)), set()).add(node)
    return sorted(groups.values(), key=len)


def assert_complete(grudge: g.Grudge, nodes: list[str], sizes: list[int]) -> None:
    assert set(grudge) == set(nodes)
    comps = components(grudge, nodes)
    assert sorted(len(c) for c in comps) == sorted(sizes)
    for comp in comps:
        for node in comp:
            assert sees(grudge, node, nodes) == comp  # sees its side, all of it, nothing else
    # Symmetric: a complete grudge cuts both directions.
    assert {(b, a) for a, b in g.grudge_links(grudge)} == g.grudge_links(grudge)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_one_isolates_a_single_node(n: int, seed: int) -> None:
    nodes = nodes_of(n)
    grudge, desc = g.one(nodes, random.Random(seed))
    assert_complete(grudge, nodes, [1, n - 1])
    alone = next(node for node in nodes if sees(grudge, node, nodes) == {node})
    assert alone in desc
    assert len(g.grudge_links(grudge)) == 2 * (n - 1)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_majority_leaves_a_strict_majority(n: int, seed: int) -> None:
    nodes = nodes_of(n)
    grudge, _ = g.majority(nodes, random.Random(seed))
    small = (n - 1) // 2
    assert_complete(grudge, nodes, [small, n - small])
    assert n - small >= g.majority_size(n)


@pytest.mark.parametrize("n", SIZES + [4, 6])
def test_random_halves_sizes(n: int) -> None:
    nodes = nodes_of(n)
    grudge, _ = g.random_halves(nodes, random.Random(1))
    assert_complete(grudge, nodes, [n // 2, n - n // 2])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_minority_third_is_under_a_third(n: int, seed: int) -> None:
    nodes = nodes_of(n)
    grudge, _ = g.minority_third(nodes, random.Random(seed))
    small = max(1, (n - 1) // 3)
    assert_complete(grudge, nodes, [small, n - small])
    assert small < n / 3 or n == 3  # 3 nodes: one node, the smallest non-empty minority


@pytest.mark.parametrize("n", SIZES + [4])
@pytest.mark.parametrize("seed", SEEDS)
def test_majorities_ring(n: int, seed: int) -> None:
    nodes = nodes_of(n)
    grudge, desc = g.majorities_ring(nodes, random.Random(seed))
    assert set(grudge) == set(nodes)
    views = [frozenset(sees(grudge, node, nodes)) for node in nodes]
    for node, view in zip(nodes, views):
        assert node in view
        assert len(view) == g.majority_size(n)
    assert len(set(views)) == n  # no two nodes see the same majority
    assert grudge  # and it does cut something
    assert g.grudge_links(grudge)
    assert "sees" in desc


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_bridge(n: int, seed: int) -> None:
    nodes = nodes_of(n)
    grudge, desc = g.bridge(nodes, random.Random(seed))
    assert set(grudge) == set(nodes)
    bridges = [node for node in nodes if sees(grudge, node, nodes) == set(nodes)]
    assert len(bridges) == 1
    the_bridge = bridges[0]
    assert f"bridge {the_bridge}" in desc
    for node in nodes:
        assert the_bridge in sees(grudge, node, nodes)  # everyone hears the bridge
    others = [node for node in nodes if node != the_bridge]
    sides = components({k: v for k, v in grudge.items() if k != the_bridge}, others)
    # Outside the bridge, two sides that cannot hear each other.
    side_views = {frozenset(sees(grudge, node, nodes) - {the_bridge}) for node in others}
    assert len(side_views) == 2
    assert sorted(len(v) for v in side_views) == sorted([n // 2, n - n // 2 - 1])
    assert sum(len(s) for s in sides) == n - 1


def test_same_seed_same_partition_and_different_seeds_vary() -> None:
    nodes = nodes_of(5)
    for shape in g.SHAPES:
        a = g.partition(shape, nodes, random.Random(7))
        b = g.partition(shape, nodes, random.Random(7))
        assert a == b
        drawn = {str(g.partition(shape, nodes, random.Random(s)).to_json()) for s in range(30)}
        assert len(drawn) > 1, shape


def test_links_direction_and_record() -> None:
    grudge = {"a": {"b"}, "b": set(), "c": set()}
    assert g.grudge_links(grudge) == {("b", "a")}  # a must not hear from b: cut b -> a
    p = g.partition("one", ["x", "y", "z"], random.Random(3))
    rec = p.to_json()
    assert rec["shape"] == "one"
    assert set(rec["grudge"]) == {"x", "y", "z"}
    assert p.links() == g.grudge_links({k: set(v) for k, v in rec["grudge"].items()})


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="unknown partition shape 'nope'"):
        g.partition("nope", ["a", "b"], random.Random(0))
    with pytest.raises(ValueError, match="distinct"):
        g.one(["a", "a", "b"], random.Random(0))
    with pytest.raises(ValueError, match="at least 2"):
        g.one(["a"], random.Random(0))


def test_stream_cuts() -> None:
    # One-way grudge: a must not hear from b. Cut b's requests to a, and b's replies to a.
    assert g.stream_cuts({"a": {"b"}, "b": set()}) == {("b", "a", "upstream"),
                                                       ("a", "b", "downstream")}
    # Symmetric grudges cut both streams of both proxies of each pair.
    nodes = nodes_of(5)
    grudge, _ = g.majority(nodes, random.Random(4))
    links = g.grudge_links(grudge)
    assert g.stream_cuts(grudge) == {(s, d, st) for s, d in links
                                     for st in ("upstream", "downstream")}
