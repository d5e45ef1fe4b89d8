"""Partition shapes, as Jepsen defines them: pure functions from a node list and an Rng.

A *grudge* (Jepsen's representation) maps every node to the set of nodes it must not hear
from. Every node of the cluster is a key (possibly with an empty set), so a stored grudge says
explicitly who was untouched. :func:`grudge_links` turns a grudge into the directed links
``(src, dst)`` whose traffic is cut: ``dst`` must not hear from ``src``. Where replies travel on
the connection that carried the request (ringlab's internode messaging), :func:`stream_cuts` says
which stream of which link proxy to cut; for symmetric grudges that is both streams of both
proxies of each cut pair.

Shapes (the names ``harness run --partition`` takes):

* ``one``: one random node isolated from all others (Jepsen's ``:one``).
* ``majority``: a random minority of ``(n-1)//2`` nodes cut off from the majority
  (Jepsen's ``:majority``; for even n the majority side is strictly larger).
* ``random-halves``: the shuffled nodes cut in two halves, ``n//2`` and the rest (Jepsen's
  ``partition-random-halves``; for even n neither side has a majority).
* ``minority-third``: a random group of fewer than a third of the nodes, ``(n-1)//3`` but at
  least one, cut off from the rest (Jepsen's ``:minority-third``, which would be empty for 3 nodes).
* ``majorities-ring``: every node sees a majority including itself, and no two nodes see the
  same majority (Jepsen's ``majorities-ring``, its "perfect" construction on a shuffled ring).
* ``bridge``: two halves joined by one bridge node that hears and is heard by everyone
  (Jepsen's ``bridge``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

Grudge = dict[str, set[str]]
Link = tuple[str, str]


def majority_size(n: int) -> int:
    """The smallest number of nodes that is a majority of n."""
    return n // 2 + 1


def complete_grudge(components: Iterable[Iterable[str]]) -> Grudge:
    """Every node hates every node outside its own component (Jepsen's complete-grudge)."""
    comps = [list(c) for c in components]
    universe = {node for comp in comps for node in comp}
    grudge: Grudge = {}
    for comp in comps:
        for node in comp:
            grudge[node] = universe - set(comp)
    return grudge


def _shuffled(nodes: Sequence[str], rng: random.Random) -> list[str]:
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"node names must be distinct, got {list(nodes)}")
    if len(nodes) < 2:
        raise ValueError(f"a partition needs at least 2 nodes, got {len(nodes)}")
    out = list(nodes)
    rng.shuffle(out)
    return out


def _split(nodes: Sequence[str], rng: random.Random, first: int) -> tuple[list[str], list[str]]:
    order = _shuffled(nodes, rng)
    return order[:first], order[first:]


def _fmt(nodes: Iterable[str]) -> str:
    return "{" + " ".join(sorted(nodes)) + "}"


def one(nodes: Sequence[str], rng: random.Random) -> tuple[Grudge, str]:
    """Isolate one random node from all the others."""
    alone, rest = _split(nodes, rng, 1)
    return complete_grudge([alone, rest]), f"isolated {alone[0]} from {_fmt(rest)}"


def majority(nodes: Sequence[str], rng: random.Random) -> tuple[Grudge, str]:
    """Cut a random minority of (n-1)//2 nodes off from the majority."""
    minority, rest = _split(nodes, rng, max(1, (len(nodes) - 1) // 2))
    return complete_grudge([minority, rest]), f"minority {_fmt(minority)} | majority {_fmt(rest)}"


def random_halves(nodes: Sequence[str], rng: random.Random) -> tuple[Grudge, str]:
    """Cut the shuffled nodes into halves of n//2 and the rest."""
    a, b = _split(nodes, rng, len(nodes) // 2)
    return complete_grudge([a, b]), f"halves {_fmt(a)} | {_fmt(b)}"


def minority_third(nodes: Sequence[str], rng: random.Random) -> tuple[Grudge, str]:
    """Cut a random group of fewer than a third of the nodes (at least one) off from the rest."""
    small, rest = _split(nodes, rng, max(1, (len(nodes) - 1) // 3))
    return complete_grudge([small, rest]), f"minority third {_fmt(small)} | {_fmt(rest)}"


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> tuple[Grudge, str]:
    """Each node sees a majority window of a shuffled ring centred on itself; all differ."""
    ring = _shuffled(nodes, rng)
    n = len(ring)
    m = majority_size(n)
    universe = set(ring)
    grudge: Grudge = {}
    views = []
    for start in range(n):
        window = [ring[(start + k) % n] for k in range(m)]
        # The window's middle node is the one that sees it, so each node's view holds itself.
        owner = window[m // 2]
        grudge[owner] = universe - set(window)
        views.append(f"{owner} sees {_fmt(window)}")
    return grudge, "majorities ring: " + "; ".join(views)


def bridge(nodes: Sequence[str], rng: random.Random) -> tuple[Grudge, str]:
    """Two halves cut apart, but one bridge node hears and is heard by both."""
    a, b = _split(nodes, rng, len(nodes) // 2)
    the_bridge, b_rest = b[0], b[1:]
    grudge = complete_grudge([a, b])
    grudge = {node: hated - {the_bridge} for node, hated in grudge.items()}
    grudge[the_bridge] = set()
    return grudge, f"bridge {the_bridge} between {_fmt(a)} and {_fmt(b_rest)}"


# The shapes by the name `--partition` takes; read-only so no caller can swap one out.
SHAPES: MappingProxyType[str, Callable[[Sequence[str], random.Random], tuple[Grudge, str]]] = (
    MappingProxyType({
        "one": one,
        "majority": majority,
        "majorities-ring": majorities_ring,
        "minority-third": minority_third,
        "bridge": bridge,
        "random-halves": random_halves,
    })
)


def grudge_links(grudge: Grudge) -> set[Link]:
    """The directed links (src, dst) to cut: dst must not hear from src."""
    return {(src, dst) for dst, hated in grudge.items() for src in hated if src != dst}


def stream_cuts(grudge: Grudge) -> set[tuple[str, str, str]]:
    """Per-stream cuts (src, dst, stream) for messaging whose replies share the request's connection.

    Proxy ``(src, dst)`` carries the connections ``src`` opens to ``dst``: its ``upstream`` stream
    is src's requests, its ``downstream`` stream dst's replies. For dst not to hear from src, cut
    src's requests to dst and src's replies to dst's own requests; dst's requests still reach src,
    as with an iptables DROP on dst of packets from src.
    """
    cuts: set[tuple[str, str, str]] = set()
    for src, dst in grudge_links(grudge):
        cuts.add((src, dst, "upstream"))
        cuts.add((dst, src, "downstream"))
    return cuts


@dataclass(frozen=True)
class Partition:
    """A chosen partition: its shape, the exact grudge, and a sentence describing it."""

    shape: str
    grudge: dict[str, frozenset[str]]
    description: str

    def links(self) -> set[Link]:
        """The directed links (src, dst) to cut."""
        return grudge_links({k: set(v) for k, v in self.grudge.items()})

    def stream_cuts(self) -> set[tuple[str, str, str]]:
        """The per-stream cuts (src, dst, stream); see :func:`stream_cuts`."""
        return stream_cuts({k: set(v) for k, v in self.grudge.items()})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record for the history (sorted, so equal grudges compare equal)."""
        return {
            "shape": self.shape,
            "grudge": {k: sorted(v) for k, v in sorted(self.grudge.items())},
            "description": self.description,
        }


def partition(shape: str, nodes: Sequence[str], rng: random.Random) -> Partition:
    """Draw a partition of the given shape over ``nodes`` using ``rng``."""
    try:
        fn = SHAPES[shape]
    except KeyError:
        raise ValueError(
            f"unknown partition shape {shape!r}; choose one of {', '.join(SHAPES)}"
        ) from None
    grudge, description = fn(nodes, rng)
    return Partition(shape, {k: frozenset(v) for k, v in grudge.items()}, description)
