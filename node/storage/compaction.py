"""Size-tiered compaction: which SSTables to merge, and the merge itself with tombstone purging."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .cells import Cell, Partition
from .config import TableOptions
from .sstable import SSTableReader


def size_tiered_buckets(readers: Sequence[SSTableReader], opts: TableOptions) -> list[list[SSTableReader]]:
    """Group SSTables of similar size (Cassandra's STCS ``getBuckets``), smallest first."""
    buckets: list[tuple[float, list[SSTableReader]]] = []
    small = opts.compaction_min_sstable_bytes
    for r in sorted(readers, key=lambda r: (r.data_bytes, r.generation)):
        size = r.data_bytes
        for i, (avg, members) in enumerate(buckets):
            similar = opts.compaction_bucket_low * avg <= size <= opts.compaction_bucket_high * avg
            if similar or (size < small and avg < small):
                members.append(r)
                buckets[i] = ((avg * (len(members) - 1) + size) / len(members), members)
                break
        else:
            buckets.append((float(size), [r]))
    return [members for _, members in buckets]


def choose_compaction(readers: Sequence[SSTableReader], opts: TableOptions, major: bool) -> list[SSTableReader]:
    """The SSTables to compact next (empty when nothing is due)."""
    if major:
        return list(readers)
    candidates = [b for b in size_tiered_buckets(readers, opts) if len(b) >= opts.compaction_min_threshold]
    if not candidates:
        return []
    # The bucket of smallest files first: cheapest to merge and it removes the most read overhead
    # per byte written (Cassandra picks the "hottest"; we keep no read counters).
    best = min(candidates, key=lambda b: sum(r.data_bytes for r in b) / len(b))
    return best[: opts.compaction_max_threshold]


def merged_partitions(readers: Sequence[SSTableReader]) -> Iterator[Partition]:
    """Every partition of ``readers`` merged by key, in sort order."""
    streams = [
        ((skey, p.key, idx, p) for skey, p in r.iter_range())
        for idx, r in enumerate(readers)
    ]
    current: Partition | None = None
    current_id: tuple[Any, bytes] | None = None
    for skey, key, _idx, part in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
        ident = (skey, key)
        if ident == current_id:
            current = current.merge(part)  # type: ignore[union-attr]
            continue
        if current is not None:
            yield current
        current, current_id = part, ident
    if current is not None:
        yield current


def purge(p: Partition, now_s: int, gc_grace_s: int, max_purgeable_ts: int | None) -> Partition:
    """Turn expired TTL cells into tombstones and drop tombstones that are safe to forget.

    A tombstone is dropped only when it is older than ``gc_grace_s`` *and* its timestamp is below
    ``max_purgeable_ts``: the oldest timestamp any source outside this compaction may hold for the
    key (``None`` when no other source can hold it). Otherwise an older value it shadows could
    come back to life.
    """
    p = p.normalized()

    def purgeable(ts: int, ldt: int | None) -> bool:
        return (ldt is not None and ldt + gc_grace_s <= now_s
                and (max_purgeable_ts is None or ts < max_purgeable_ts))

    cells: dict[str, Cell] = {}
    for name, c in p.cells.items():
        if c.value is not None and c.ttl is not None and c.local_deletion_time is not None \
                and c.local_deletion_time <= now_s:
            c = Cell(name, None, c.timestamp, None, c.local_deletion_time)
        if c.value is None and purgeable(c.timestamp, c.local_deletion_time):
            continue
        cells[name] = c
    rts = {pre: rt for pre, rt in p.range_tombstones.items()
           if not purgeable(rt.timestamp, rt.local_deletion_time)}
    pt, pdt = p.partition_tombstone, p.partition_deletion_time
    if pt is not None and purgeable(pt, pdt):
        pt = pdt = None
    return Partition(p.key, cells, pt, pdt, rts)


def compacted_partitions(
    readers: Sequence[SSTableReader],
    now_s: int,
    gc_grace_s: int,
    max_purgeable: Callable[[bytes, Any], int | None],
    sort_key: Callable[[bytes], Any],
) -> Iterator[Partition]:
    """The compaction output stream: merged, expired cells converted, purgeable tombstones dropped."""
    for p in merged_partitions(readers):
        out = purge(p, now_s, gc_grace_s, max_purgeable(p.key, sort_key(p.key)))
        if not out.is_empty():
            yield out
