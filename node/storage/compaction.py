"""Size-tiered compaction: which SSTables to merge, and the merge itself with tombstone purging."""

from __future__ import annotations

import heapq
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import msgpack
import msgspec

from .cells import Cell, Partition
from .config import TableOptions
from .sstable import NAME_SEPARATOR, RawPartition, SSTableReader, _array_header, _array_header_len, encode_record


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


def purge(p: Partition, now_s: int, gc_grace_s: int, max_purgeable_ts: int | None) -> Partition:
    """Turn expired TTL cells into tombstones and drop tombstones that are safe to forget.

    A tombstone is dropped only when more than ``gc_grace_s`` whole seconds passed since its
    local deletion time (Cassandra: ``ldt < now - gc_grace``) *and* its timestamp is below
    ``max_purgeable_ts``: the oldest timestamp any source outside this compaction may hold for the
    key (``None`` when no other source can hold it). Otherwise an older value it shadows could
    come back to life.
    """
    p = p.normalized()

    def purgeable(ts: int, ldt: int | None) -> bool:
        return (ldt is not None and ldt + gc_grace_s < now_s
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
) -> Iterator[Partition | RawPartition]:
    """The compaction output stream: merged, expired cells converted, purgeable tombstones dropped.

    A partition that nothing can change (no deletion of any kind, no cell with a deletion or
    expiry time, and no column in more than one input) is not decoded: its record is copied, or
    its inputs' cells are concatenated as bytes (:func:`_raw_merge`); the output is the same
    bytes the decode, merge, purge and encode path writes.
    """
    streams = [((skey, key, idx, header, record, start, off) for skey, key, header, record, start, off in r.iter_raw())
               for idx, r in enumerate(readers)]
    group: list[tuple[Any, ...]] = []
    for item in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
        if group and (item[0] != group[0][0] or item[1] != group[0][1]):
            out = _compact_group(group, readers, now_s, gc_grace_s, max_purgeable, sort_key)
            if out is not None:
                yield out
            group = []
        group.append(item)
    if group:
        out = _compact_group(group, readers, now_s, gc_grace_s, max_purgeable, sort_key)
        if out is not None:
            yield out


def _compact_group(group: list[tuple[Any, ...]], readers: Sequence[SSTableReader], now_s: int, gc_grace_s: int,
                   max_purgeable: Callable[[bytes, Any], int | None], sort_key: Callable[[bytes], Any]
                   ) -> Partition | RawPartition | None:
    """One partition's output from its records in the inputs (None when nothing is left)."""
    raw = _raw_merge(group)
    if raw is not None:
        return raw
    merged: Partition | None = None
    for _skey, _key, idx, header, record, start, off in group:
        part = readers[idx].decode_record(header, record, start, off)
        merged = part if merged is None else merged.merge(part)
    assert merged is not None
    out = purge(merged, now_s, gc_grace_s, max_purgeable(merged.key, sort_key(merged.key)))
    return None if out.is_empty() else out


_TS = itemgetter(1)
# A record body the byte path can take: every cell ``[value, timestamp, ttl, local_deletion_time]``
# a live value (bytes, never nil) with an integer timestamp and neither TTL nor deletion time.
# msgspec checks that in C while it decodes; a body it refuses takes the full path.
_PLAIN_CELLS = msgspec.msgpack.Decoder(list[tuple[bytes, int, None, None]])


def _raw_merge(group: list[tuple[Any, ...]]) -> RawPartition | None:
    """The output record of a partition that merging and purging cannot change, built from its
    input records' bytes; None when it needs the full path.

    Unchangeable: no partition or range tombstone, no cell that is a tombstone or carries a local
    deletion time (purge only touches those), and the inputs' columns in disjoint name ranges (no
    column to reconcile), so the output is the inputs' cells in name order, bytes unchanged.
    """
    frags = []
    lo = hi = None
    cells = 0
    for _skey, _key, _idx, header, record, start, _off in group:
        if header[1] is not None or header[2] is not None or header[3]:
            return None
        try:
            objs = _PLAIN_CELLS.decode(memoryview(record)[start:])
        except Exception:  # noqa: BLE001 - not plain, or undecodable: the full path judges it
            return None
        if not objs:
            return None
        stamps = list(map(_TS, objs))
        f_lo, f_hi = min(stamps), max(stamps)
        lo = f_lo if lo is None else min(lo, f_lo)
        hi = f_hi if hi is None else max(hi, f_hi)
        cells += len(objs)
        frags.append((header[4], len(objs), header, record, start))
    key = bytes(group[0][3][0])
    if len(frags) == 1:
        blob = frags[0][0]
        return RawPartition(key, bytes(frags[0][3]), cells, lo, hi,  # type: ignore[arg-type]
                            _first_name(blob), _last_name(blob))
    frags.sort(key=lambda f: f[0])  # by names blob: by first name, as names are unique per record
    for prev, nxt in zip(frags, frags[1:]):
        # The last name of one must sort before the first of the next: "\0a\0b\0" → "b" < "c".
        if prev[0][prev[0].rindex(NAME_SEPARATOR, 0, -1) + 1:-1] >= nxt[0][1:nxt[0].index(NAME_SEPARATOR, 1)]:
            return None
    head = _array_header(cells)
    bodies = [head]
    ends = array("I")
    base = len(head)
    for _names, n, header, record, start in frags:
        old = array("I")
        old.frombytes(header[5])
        if sys.byteorder != "little":
            old.byteswap()
        h = _array_header_len(n)
        delta = base - h
        ends.extend([e + delta for e in old])
        body = memoryview(record)[start + h:]
        bodies.append(body)
        base += len(body)
    if sys.byteorder != "little":
        ends.byteswap()
    names_blob = frags[0][0] + "".join(f[0][1:] for f in frags[1:])
    record = encode_record([key, None, None, [], names_blob, ends.tobytes(), b"".join(f[2][6] for f in frags)],
                           b"".join(bodies))
    return RawPartition(key, record, cells, lo, hi,  # type: ignore[arg-type]
                        _first_name(names_blob), _last_name(names_blob))


def _first_name(names_blob: str) -> str:
    """The first name of a non-empty names blob ``"\\0a\\0b\\0"``."""
    return names_blob[1:names_blob.index(NAME_SEPARATOR, 1)]


def _last_name(names_blob: str) -> str:
    """The last name of a non-empty names blob."""
    return names_blob[names_blob.rindex(NAME_SEPARATOR, 0, -1) + 1:-1]
