"""Partitioners, virtual-node tokens and replica placement (the paper's consistent hashing).

A partitioner maps a partition key to a token; each node owns ``num_tokens`` tokens on the ring
and the range ``(previous token, token]`` belongs to the token's node. A replication strategy
walks the ring clockwise from a key's token to pick its replicas. :class:`TokenMetadata` is an
immutable snapshot of who owns which token (rebuilt whenever gossip changes membership), so
lookups can cache freely and never see a half-updated ring.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from node.murmur3 import murmur3_token
from node.runtime import Rng

# Cassandra's default since 4.0; enough vnodes for an even spread on small clusters without
# making ring walks or gossip state large.
DEFAULT_NUM_TOKENS = 16

Token = Any  # int for murmur3/random, bytes for byteordered

# Partition keys whose replicas one TokenMetadata remembers: hashing a key (pure-Python Murmur3)
# costs more than the rest of a replica lookup, and hot keys repeat. Bounded so a scan over
# millions of keys costs at most this many entries (~10 MB); the whole cache is dropped when full
# (cheaper per hit than LRU bookkeeping), and a new ring snapshot starts empty.
KEY_CACHE_ENTRIES = 65536


class Partitioner(Protocol):
    """Maps keys to tokens and tokens to/from the strings gossip carries."""

    name: str
    min_token: Token

    def token(self, key: bytes) -> Token:
        """The token of a partition key."""
        ...

    def random_token(self, rng: Rng) -> Token:
        """A uniformly random token for a new vnode."""
        ...

    def to_string(self, token: Token) -> str:
        """The token as text (gossip, ringctl)."""
        ...

    def from_string(self, text: str) -> Token:
        """Parse a token written by :meth:`to_string`."""
        ...

    def range_fraction(self, left: Token, right: Token) -> float:
        """The fraction of the whole ring in ``(left, right]`` (the whole ring when left == right)."""
        ...


class Murmur3Partitioner:
    """Cassandra's default partitioner: signed 64-bit Murmur3 tokens."""

    name = "murmur3"
    min_token = -(1 << 63)
    _span = 1 << 64

    def token(self, key: bytes) -> int:
        """The token of a partition key."""
        return murmur3_token(key)

    def random_token(self, rng: Rng) -> int:
        """A uniformly random token (never the reserved minimum)."""
        return rng.randrange(self.min_token + 1, 1 << 63)

    def to_string(self, token: int) -> str:
        """The token as decimal text, as nodetool prints it."""
        return str(token)

    def from_string(self, text: str) -> int:
        """Parse a decimal token."""
        value = int(text)
        if not self.min_token <= value < (1 << 63):
            raise ValueError(f"murmur3 token {text} out of the signed 64-bit range")
        return value

    def range_fraction(self, left: int, right: int) -> float:
        """The fraction of the ring in ``(left, right]``."""
        width = (right - left) % self._span
        return 1.0 if width == 0 else width / self._span


class RandomPartitioner:
    """Hash partitioner over SHA-1 (the design the article describes): tokens in [0, 2**159]."""

    name = "random"
    min_token = -1
    # abs() of a signed 160-bit integer lies in [0, 2**159], as RandomPartitioner does with MD5.
    _span = (1 << 159) + 1

    def token(self, key: bytes) -> int:
        """abs() of the SHA-1 digest read as a signed big-endian integer."""
        return abs(int.from_bytes(hashlib.sha1(key).digest(), "big", signed=True))

    def random_token(self, rng: Rng) -> int:
        """A uniformly random token."""
        return rng.randrange(0, self._span)

    def to_string(self, token: int) -> str:
        """Decimal text (the token does not fit msgpack's 64-bit ints)."""
        return str(token)

    def from_string(self, text: str) -> int:
        """Parse a decimal token."""
        value = int(text)
        if not -1 <= value < self._span:
            raise ValueError(f"random partitioner token {text} out of range")
        return value

    def range_fraction(self, left: int, right: int) -> float:
        """The fraction of the ring in ``(left, right]``."""
        width = (right - left) % self._span
        return 1.0 if width == 0 else width / self._span


class ByteOrderedPartitioner:
    """Order-preserving partitioner (the paper's): the token is the key's bytes themselves."""

    name = "byteordered"
    min_token = b""
    # Width of random vnode tokens; Cassandra's ByteOrderedPartitioner also draws 16 random bytes.
    _RANDOM_TOKEN_BYTES = 16

    def token(self, key: bytes) -> bytes:
        """The key itself, so ranges are key ranges."""
        return bytes(key)

    def random_token(self, rng: Rng) -> bytes:
        """Sixteen random bytes."""
        return rng.getrandbits(8 * self._RANDOM_TOKEN_BYTES).to_bytes(self._RANDOM_TOKEN_BYTES, "big")

    def to_string(self, token: bytes) -> str:
        """Hex text."""
        return token.hex()

    def from_string(self, text: str) -> bytes:
        """Parse hex text."""
        return bytes.fromhex(text)

    def range_fraction(self, left: bytes, right: bytes) -> float:
        """Approximate fraction, reading the first 16 bytes of each bound as a fraction of 1."""

        def pos(tok: bytes) -> float:
            return int.from_bytes(tok[:16].ljust(16, b"\0"), "big") / float(1 << 128)

        width = (pos(right) - pos(left)) % 1.0
        return 1.0 if left == right else width


PARTITIONERS: dict[str, type] = {
    "murmur3": Murmur3Partitioner,
    "random": RandomPartitioner,
    "byteordered": ByteOrderedPartitioner,
}


def make_partitioner(name: str) -> Partitioner:
    """The partitioner called ``name`` (murmur3, random, byteordered)."""
    try:
        return PARTITIONERS[name]()
    except KeyError:
        raise ValueError(f"unknown partitioner {name!r}; one of {', '.join(PARTITIONERS)}") from None


def generate_tokens(partitioner: Partitioner, num_tokens: int, rng: Rng, taken: Iterable[Token] = ()) -> list[Token]:
    """``num_tokens`` distinct random tokens not in ``taken``, sorted."""
    if num_tokens <= 0:
        raise ValueError("num_tokens must be positive")
    used = set(taken)
    out: set[Token] = set()
    while len(out) < num_tokens:
        tok = partitioner.random_token(rng)
        if tok not in used and tok != partitioner.min_token:
            out.add(tok)
    return sorted(out)


# --------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class SimpleStrategy:
    """The next ``replication_factor`` distinct nodes clockwise from the key's token."""

    replication_factor: int

    def describe(self) -> dict[str, Any]:
        """The replication map as the schema stores it."""
        return {"class": "SimpleStrategy", "replication_factor": self.replication_factor}


@dataclass(frozen=True)
class NetworkTopologyStrategy:
    """``rf`` replicas per datacenter, on distinct racks first (as Cassandra places them)."""

    dc_rf: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, dc_rf: Mapping[str, int]) -> "NetworkTopologyStrategy":
        """Build from a ``{dc: rf}`` map."""
        return cls(tuple(sorted(dc_rf.items())))

    def describe(self) -> dict[str, Any]:
        """The replication map as the schema stores it."""
        out: dict[str, Any] = {"class": "NetworkTopologyStrategy"}
        out.update(dict(self.dc_rf))
        return out


Strategy = SimpleStrategy | NetworkTopologyStrategy

_STRATEGY_ALIASES = {
    "SimpleStrategy": "SimpleStrategy",
    "org.apache.cassandra.locator.SimpleStrategy": "SimpleStrategy",
    "NetworkTopologyStrategy": "NetworkTopologyStrategy",
    "org.apache.cassandra.locator.NetworkTopologyStrategy": "NetworkTopologyStrategy",
}


def strategy_from_options(options: Mapping[str, Any]) -> Strategy:
    """Parse ``{class: SimpleStrategy, replication_factor: N}`` or ``{class: NetworkTopologyStrategy, dc: N}``."""
    if not isinstance(options, Mapping):
        raise ValueError("replication must be a map")
    cls = _STRATEGY_ALIASES.get(options.get("class", ""))
    if cls is None:
        raise ValueError(f"replication class must be SimpleStrategy or NetworkTopologyStrategy, got {options.get('class')!r}")
    rest = {k: v for k, v in options.items() if k != "class"}
    if cls == "SimpleStrategy":
        if set(rest) != {"replication_factor"}:
            raise ValueError(f"SimpleStrategy takes exactly 'replication_factor', got {sorted(rest)}")
        rf = _rf(rest["replication_factor"], "replication_factor")
        return SimpleStrategy(rf)
    if not rest:
        raise ValueError("NetworkTopologyStrategy needs at least one datacenter: replication factor")
    return NetworkTopologyStrategy.of({str(dc): _rf(v, f"replication factor of {dc}") for dc, v in rest.items()})


def _rf(value: Any, what: str) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
        raise ValueError(f"{what} must be an integer in 0..64, got {value!r}")
    return value


# --------------------------------------------------------------------------- token metadata


@dataclass(frozen=True)
class Endpoint:
    """Where a node sits: its datacenter and rack."""

    datacenter: str = "dc1"
    rack: str = "rack1"


class TokenMetadata:
    """An immutable snapshot of the ring: sorted tokens, their owners and each owner's location."""

    def __init__(
        self,
        partitioner: Partitioner,
        tokens: Mapping[str, Iterable[Token]],
        locations: Mapping[str, Endpoint] | None = None,
    ) -> None:
        self.partitioner = partitioner
        pairs: dict[Token, str] = {}
        for node, toks in tokens.items():
            for tok in toks:
                other = pairs.get(tok)
                if other is not None and other != node:
                    # Two nodes claiming one token: keep the smaller id deterministically, like
                    # Cassandra keeps one owner, so every node computes the same ring.
                    if node > other:
                        continue
                pairs[tok] = node
        self._sorted_tokens: list[Token] = sorted(pairs)
        self._owners: list[str] = [pairs[t] for t in self._sorted_tokens]
        self.locations: dict[str, Endpoint] = {n: (locations or {}).get(n, Endpoint()) for n in tokens}
        self._cache: dict[tuple[Strategy, int], tuple[str, ...]] = {}
        self._key_cache: dict[tuple[Strategy, bytes], tuple[str, ...]] = {}
        self._token_strings: list[tuple[str, str]] | None = None

    @property
    def nodes(self) -> list[str]:
        """Every node that owns at least one token."""
        return sorted(set(self._owners))

    @property
    def sorted_tokens(self) -> list[Token]:
        """All tokens in ring order."""
        return list(self._sorted_tokens)

    def token_strings(self) -> list[tuple[str, str]]:
        """Each token as its partitioner writes it, with its owner, in ring order (made once per
        ring: the ``ring`` admin op answers with it, and the harness asks every few ms while a
        membership change runs)."""
        if self._token_strings is None:
            to_string = self.partitioner.to_string
            self._token_strings = [(to_string(t), o) for t, o in zip(self._sorted_tokens, self._owners)]
        return self._token_strings

    def owner(self, token: Token) -> str:
        """The node owning exactly this token."""
        i = bisect.bisect_left(self._sorted_tokens, token)
        if i == len(self._sorted_tokens) or self._sorted_tokens[i] != token:
            raise KeyError(token)
        return self._owners[i]

    def tokens_of(self, node: str) -> list[Token]:
        """The tokens one node owns, sorted."""
        return [t for t, n in zip(self._sorted_tokens, self._owners) if n == node]

    def _index_for(self, token: Token) -> int:
        """Index of the first ring token >= ``token`` (wrapping): its node owns the token."""
        i = bisect.bisect_left(self._sorted_tokens, token)
        return 0 if i == len(self._sorted_tokens) else i

    def replicas_for_token(self, token: Token, strategy: Strategy) -> tuple[str, ...]:
        """The replicas of ``token`` in placement order (the primary first)."""
        if not self._sorted_tokens:
            return ()
        idx = self._index_for(token)
        key = (strategy, idx)
        hit = self._cache.get(key)
        if hit is None:
            if isinstance(strategy, SimpleStrategy):
                hit = self._simple(idx, strategy.replication_factor)
            else:
                hit = self._network_topology(idx, dict(strategy.dc_rf))
            self._cache[key] = hit
        return hit

    def endpoints_for(self, key: bytes, strategy: Strategy) -> tuple[str, ...]:
        """The replicas of a partition key, primary first."""
        if type(key) is not bytes:  # bytearray/memoryview: not hashable or may change
            return self.replicas_for_token(self.partitioner.token(key), strategy)
        ck = (strategy, key)
        hit = self._key_cache.get(ck)
        if hit is None:
            hit = self.replicas_for_token(self.partitioner.token(key), strategy)
            if len(self._key_cache) >= KEY_CACHE_ENTRIES:
                self._key_cache.clear()
            self._key_cache[ck] = hit
        return hit

    def _walk(self, start: int) -> Iterable[str]:
        n = len(self._owners)
        for step in range(n):
            yield self._owners[(start + step) % n]

    def _simple(self, start: int, rf: int) -> tuple[str, ...]:
        out: list[str] = []
        for node in self._walk(start):
            if len(out) >= rf:
                break
            if node not in out:
                out.append(node)
        return tuple(out)

    def _network_topology(self, start: int, dc_rf: dict[str, int]) -> tuple[str, ...]:
        # Per DC: take nodes on racks not seen yet; park nodes on seen racks until every rack of
        # the DC has one replica, then fill from the parked ones in ring order (Cassandra's
        # NetworkTopologyStrategy.calculateNaturalEndpoints).
        nodes_in_dc: dict[str, set[str]] = {}
        racks_in_dc: dict[str, set[str]] = {}
        for node in set(self._owners):
            loc = self.locations.get(node, Endpoint())
            nodes_in_dc.setdefault(loc.datacenter, set()).add(node)
            racks_in_dc.setdefault(loc.datacenter, set()).add(loc.rack)
        want = {dc: min(rf, len(nodes_in_dc.get(dc, ()))) for dc, rf in dc_rf.items()}
        chosen: dict[str, list[str]] = {dc: [] for dc in want}
        seen_racks: dict[str, set[str]] = {dc: set() for dc in want}
        parked: dict[str, list[str]] = {dc: [] for dc in want}
        order: list[str] = []

        def done() -> bool:
            return all(len(chosen[dc]) >= want[dc] for dc in want)

        for node in self._walk(start):
            if done():
                break
            loc = self.locations.get(node, Endpoint())
            dc = loc.datacenter
            if dc not in want or len(chosen[dc]) >= want[dc] or node in chosen[dc] or node in parked[dc]:
                continue
            if loc.rack not in seen_racks[dc]:
                seen_racks[dc].add(loc.rack)
                chosen[dc].append(node)
                order.append(node)
                if seen_racks[dc] == racks_in_dc[dc]:
                    while parked[dc] and len(chosen[dc]) < want[dc]:
                        p = parked[dc].pop(0)
                        chosen[dc].append(p)
                        order.append(p)
            elif seen_racks[dc] == racks_in_dc[dc]:
                chosen[dc].append(node)
                order.append(node)
            else:
                parked[dc].append(node)
        return tuple(order)

    def ranges(self) -> list[tuple[Token, Token]]:
        """Every ``(left, right]`` range of the ring, in ring order (the first one wraps)."""
        toks = self._sorted_tokens
        return [(toks[i - 1], toks[i]) for i in range(len(toks))]

    def primary_ranges(self, node: str) -> list[tuple[Token, Token]]:
        """The ranges whose primary owner is ``node``."""
        return [r for r, owner in zip(self.ranges(), self._owners) if owner == node]

    def ranges_for(self, node: str, strategy: Strategy) -> list[tuple[Token, Token]]:
        """The ranges ``node`` holds a replica of under ``strategy``."""
        return [r for i, r in enumerate(self.ranges()) if node in self.replicas_for_token(self._sorted_tokens[i], strategy)]

    def ownership(self, strategy: Strategy | None = None) -> dict[str, float]:
        """Fraction of the ring each node holds: primary ranges, or every replicated range under ``strategy``."""
        out = {n: 0.0 for n in self.locations}
        part = self.partitioner
        for i, (left, right) in enumerate(self.ranges()):
            frac = part.range_fraction(left, right) if len(self._sorted_tokens) > 1 else 1.0
            holders = (self._owners[i],) if strategy is None else self.replicas_for_token(right, strategy)
            for n in holders:
                out[n] = out.get(n, 0.0) + frac
        return out
