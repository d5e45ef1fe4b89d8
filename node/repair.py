"""Anti-entropy repair: Merkle trees per token range, exchanged between replicas, then streaming
of only the ranges whose hashes differ (merged by last-write-wins on apply).

A repair coordinated by node N walks every range N replicates (or the pieces of one range an
operator names). For each range and table:

1. **Validation.** N scans its own partitions of the range and picks the tree depth so a leaf
   holds about ``PARTITIONS_PER_LEAF`` partitions; every live replica then scans the range and
   hashes it into ``2**depth`` leaves (equal token slices of the range). A leaf's hash is a
   BLAKE2b over the digests of its partitions in token order (``Partition.digest`` covers
   tombstones, so a missed delete differs as much as a missed write).
2. **Exchange.** Replicas send the leaf level; the inner levels are hashes of their children, so
   the receiver rebuilds the tree and compares top-down: equal roots end the comparison at once,
   otherwise it descends into differing subtrees down to the differing leaves.
3. **Sync.** For each pair of replicas that differ, each pulls the differing leaves' slices from
   the other (``STREAM_FETCH``). Applying a streamed partition merges it by last-write-wins, so
   both converge; a slice that is newer on one side is simply re-applied on the other.

Run it within ``gc_grace_seconds`` of deletes: a replica that missed a delete keeps the old value,
and once the other replicas have purged their tombstone (after the grace period) repair or read
repair would copy that value back: the deleted data is resurrected.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import trio

from node.protocol import InvalidRequest
from node.ring import Partitioner, Token, TokenMetadata
from node.runtime import offload
from node.streaming import Range, Streamer, segments_of

log = logging.getLogger("node.repair")

VERB_VALIDATE = "REPAIR_VALIDATE"

# Partitions per leaf: 1% of keys differing then streams about 4% of a range (both ways) while a
# tree costs about 4 bytes per partition (16-byte leaf hashes), small next to any partition.
PARTITIONS_PER_LEAF = 4
# Cassandra caps a tree at 2**15 leaves per range (repair_session_max_tree_depth, older default
# 18 but with large ranges); 2**16 leaves of 16 bytes is a 1 MiB message, well under a frame.
MAX_DEPTH = 16
# The digest size of leaf hashes: 128 bits make an accidental collision negligible.
HASH_BYTES = 16
# One validation scans a range of a table on a replica: generous for a loaded host.
VALIDATE_TIMEOUT = 120.0
# One differing-slice transfer; pages inside it are retried.
SYNC_TIMEOUT = 600.0

_EMPTY = hashlib.blake2b(b"", digest_size=HASH_BYTES).digest()


def _combine(a: bytes, b: bytes) -> bytes:
    if a == _EMPTY and b == _EMPTY:
        return _EMPTY
    return hashlib.blake2b(a + b, digest_size=HASH_BYTES).digest()


def build_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the Merkle tree over ``leaves`` (a power of two of them), root level first."""
    levels = [list(leaves)]
    while len(levels[0]) > 1:
        below = levels[0]
        levels.insert(0, [_combine(below[i], below[i + 1]) for i in range(0, len(below), 2)])
    return levels


def differing_leaves(a: Sequence[bytes], b: Sequence[bytes]) -> list[int]:
    """Indexes of leaves that differ, found top-down (equal subtrees are not descended into)."""
    if len(a) != len(b):
        raise ValueError("trees of different depths")
    la, lb = build_levels(a), build_levels(b)
    out: list[int] = []
    todo = [(0, 0)]
    while todo:
        level, i = todo.pop()
        if la[level][i] == lb[level][i]:
            continue
        if level == len(la) - 1:
            out.append(i)
        else:
            todo.extend([(level + 1, 2 * i + 1), (level + 1, 2 * i)])
    return sorted(out)


def _width(partitioner: Partitioner, left: Token, right: Token) -> int | None:
    span = getattr(partitioner, "_span", None)
    if span is None or not isinstance(left, int):
        return None
    return (right - left) % span or span


def leaf_bounds(partitioner: Partitioner, left: Token, right: Token, depth: int, index: int) -> Range:
    """The token slice ``(l, r]`` of leaf ``index`` of a depth-``depth`` tree over ``(left, right]``."""
    width = _width(partitioner, left, right)
    if width is None or depth == 0:
        return (left, right)
    span = partitioner._span  # type: ignore[attr-defined]
    lo = partitioner.min_token  # type: ignore[attr-defined]
    n = 1 << depth

    def at(k: int) -> Token:
        if k == n:
            return right
        return (left + width * k // n - lo) % span + lo

    return (at(index), at(index + 1))


def merge_leaves(partitioner: Partitioner, left: Token, right: Token, depth: int, leaves: Sequence[int]) -> list[Range]:
    """Slices of the differing leaves, adjacent ones merged."""
    out: list[Range] = []
    prev = None
    for i in leaves:
        lo, hi = leaf_bounds(partitioner, left, right, depth, i)
        if prev is not None and prev == i - 1:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
        prev = i
    return out


def split_range_at_ring(ring: TokenMetadata, partitioner: Partitioner, left: Token, right: Token) -> list[Range]:
    """``(left, right]`` cut at every ring token inside it, so each piece has one replica set."""
    def offset_key(t: Token) -> tuple[int, Token]:
        return (0, t) if t > left else (1, t)

    inside = []
    for t in ring.sorted_tokens:
        if t == left or t == right:
            continue
        if (left < right and left < t < right) or (left >= right and (t > left or t < right)):
            inside.append(t)
    inside.sort(key=offset_key)
    points = [left, *inside, right]
    return [(points[i], points[i + 1]) for i in range(len(points) - 1)]


class Repairer:
    """Serves validation requests and coordinates repairs of the ranges this node replicates."""

    def __init__(self, node: Any, streamer: Streamer) -> None:
        self.node = node
        self.streamer = streamer
        self.partitioner: Partitioner = node.partitioner
        self.running = False
        self.last_result: dict[str, Any] = {}
        node.messaging.register(VERB_VALIDATE, self._handle_validate)

    # ---- validation (any replica)

    def validate(self, ks: str, table: str, left: Token, right: Token, depth: int | None) -> dict[str, Any]:
        """Leaf hashes of ``(left, right]`` (choosing the depth from the partition count when None)."""
        part = self.partitioner
        entries: list[tuple[int, bytes]] = []
        width = _width(part, left, right)
        for _seg, tok, p in self.streamer.iter_range_partitions(ks, table, segments_of([(left, right)])):
            off = ((tok - left) % part._span) if width is not None else 0  # type: ignore[attr-defined]
            entries.append((off, p.digest()))
        if depth is None:
            depth = 0 if width is None else max(0, min(MAX_DEPTH, math.ceil(math.log2(max(1, len(entries)) / PARTITIONS_PER_LEAF)) if entries else 0))
        n = 1 << depth
        hashers: list[Any] = [None] * n
        for off, dig in entries:
            # Leaf k holds offsets in (floor(width*k/n), floor(width*(k+1)/n)], as leaf_bounds cuts them.
            i = 0 if width is None or depth == 0 or off <= 0 else min(n - 1, (off * n - 1) // width)
            h = hashers[i]
            if h is None:
                h = hashers[i] = hashlib.blake2b(digest_size=HASH_BYTES)
            h.update(dig)
        leaves = [(_EMPTY if h is None else h.digest()) for h in hashers]
        return {"depth": depth, "leaves": b"".join(leaves), "count": len(entries)}

    async def _handle_validate(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        ks, table = payload["ks"], payload["t"]
        self.node.schema.table(ks, table)
        (left, right), = self.streamer.decode_ranges([payload["range"]])
        depth = payload.get("depth")
        return await offload(self.validate, ks, table, left, right, depth)

    # ---- coordination

    def _split(self, leaves: bytes) -> list[bytes]:
        return [leaves[i:i + HASH_BYTES] for i in range(0, len(leaves), HASH_BYTES)]

    async def repair(self, keyspace: str | None = None, user_range: Range | None = None) -> dict[str, Any]:
        """Repair every range this node replicates (of one keyspace, or within one range)."""
        if self.running:
            raise InvalidRequest(f"a repair is already running on {self.node.node_id}")
        if keyspace is not None:
            self.node.schema.keyspace(keyspace)
        self.running = True
        try:
            return await self._repair(keyspace, user_range)
        finally:
            self.running = False

    async def _repair(self, keyspace: str | None, user_range: Range | None) -> dict[str, Any]:
        me = self.node.node_id
        start = trio.current_time()
        ring = self.node.ring()
        stats = {"ranges": 0, "tables": 0, "tree_bytes": 0, "differing_leaves": 0, "leaves": 0,
                 "streamed_bytes": 0, "streamed_partitions": 0, "skipped_replicas": [], "partitions_validated": 0}
        schema = self.node.schema
        for t in schema.live_tables():
            if keyspace is not None and t.keyspace != keyspace:
                continue
            strategy = schema.keyspace(t.keyspace).strategy()
            stats["tables"] += 1
            if user_range is not None:
                pieces = [r for r in split_range_at_ring(ring, self.partitioner, *user_range)
                          if me in ring.replicas_for_token(r[1], strategy)]
            else:
                pieces = ring.ranges_for(me, strategy)
            for left, right in pieces:
                replicas = list(ring.replicas_for_token(right, strategy))
                await self._repair_range(t.keyspace, t.name, left, right, replicas, stats)
        stats["seconds"] = round(trio.current_time() - start, 3)
        log.info("repair%s complete: %s", f" of {keyspace}" if keyspace else "", stats)
        self.last_result = stats
        return stats

    async def _repair_range(self, ks: str, table: str, left: Token, right: Token, replicas: list[str], stats: dict[str, Any]) -> None:
        me = self.node.node_id
        wire_range = self.streamer.encode_ranges([(left, right)])[0]
        mine = await offload(self.validate, ks, table, left, right, None)
        depth = mine["depth"]
        trees: dict[str, list[bytes]] = {me: self._split(mine["leaves"])}
        stats["ranges"] += 1
        stats["partitions_validated"] += mine["count"]

        async def ask(r: str) -> None:
            try:
                reply = await self.node.messaging.request(r, VERB_VALIDATE, {"ks": ks, "t": table, "range": wire_range, "depth": depth}, VALIDATE_TIMEOUT)
                trees[r] = self._split(reply["leaves"])
                stats["tree_bytes"] += len(reply["leaves"])
            except Exception as exc:
                log.warning("repair: validation of %s.%s (%s, %s] on %s failed: %s", ks, table, left, right, r, exc)
                stats["skipped_replicas"].append(r)

        others = [r for r in replicas if r != me]
        async with trio.open_nursery() as n:
            for r in others:
                if self.node.is_alive(r):
                    n.start_soon(ask, r)
                else:
                    stats["skipped_replicas"].append(r)
        names = sorted(trees)
        stats["leaves"] += len(trees[me])
        syncs: list[tuple[str, str, list[Range]]] = []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                diff = differing_leaves(trees[a], trees[b])
                if not diff:
                    continue
                stats["differing_leaves"] += len(diff)
                slices = merge_leaves(self.partitioner, left, right, depth, diff)
                syncs.append((a, b, slices))
                syncs.append((b, a, slices))

        async def sync(target: str, source: str, slices: list[Range]) -> None:
            try:
                res = await self.streamer.fetch_into(target, source, ks, table, slices, SYNC_TIMEOUT)
                stats["streamed_bytes"] += int(res.get("bytes", 0))
                stats["streamed_partitions"] += int(res.get("partitions", 0))
            except Exception as exc:
                log.warning("repair: sync of %s.%s from %s to %s failed: %s", ks, table, source, target, exc)
                stats["skipped_replicas"].append(target)

        async with trio.open_nursery() as n:
            for target, source, slices in syncs:
                n.start_soon(sync, target, source, slices)
