"""SSTable slices: the part of an SSTable inside one sort-key segment, as a whole SSTable of its own.

A range transfer moves SSTables wholly inside a range as files (node/rangecopy.py). An SSTable that
also holds keys outside the range (a join's new token splits a range the file was cut for) need
not be rewritten partition by partition: records are sorted by sort key, so the partitions of a
segment ``(lo, hi]`` are one contiguous byte run of ``Data.db``. A slice is that run (sent with
``sendfile`` from the parent file at an offset, never copied on the source) plus small components
built here from the parent's index: index blocks with rebased offsets, summary, a bloom filter
over the slice's keys, statistics and digest. The target verifies and imports it like any file.

Statistics of a slice: ``partitions``, ``first_key``, ``last_key`` and ``data_bytes`` are exact;
``min_timestamp``, ``max_timestamp``, ``max_local_deletion_time`` and ``column_bounds`` are the
parent's bounds (still bounds of the slice: purges and time-ordered reads only get more careful), and ``cells`` /
``tombstones`` are the parent's counts scaled by the slice's share of its partitions (an estimate,
marked by ``origin = "slice"``). Reading the data is avoided except for one CRC pass.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from .bloom import BloomFilter
from .sstable import COMPONENTS, DIGEST, INDEX_BLOCK_ENTRIES, TOC, SSTableReader, _self_checked

# CRC the slice's data in pieces of this size: a bounded view of the mapping at a time.
_CRC_CHUNK = 8 << 20


@dataclass
class Slice:
    """One slice of a parent SSTable: a data byte run and the other components' bytes."""

    parent: int
    offset: int
    length: int
    partitions: int
    data_crc: int
    blobs: dict[str, bytes]

    def sizes(self) -> list[tuple[str, int, int | None]]:
        """``(component, size, crc)`` in send order (data, the others, digest, TOC last)."""
        out: list[tuple[str, int, int | None]] = [("Data.db", self.length, self.data_crc)]
        for comp in (*COMPONENTS[1:], DIGEST, TOC):
            blob = self.blobs[comp]
            out.append((comp, len(blob), zlib.crc32(blob)))
        return out


def slice_sstable(reader: SSTableReader, lo: Any, hi: Any, bloom_fp_chance: float) -> Slice | None:
    """The partitions of ``reader`` with ``lo < sort_key <= hi`` (None = open) as a :class:`Slice`.

    None when the segment holds no partition of the file, or when its records are not one
    contiguous run (never for a file this engine wrote; then the pages carry them).
    """
    entries: list[tuple[bytes, int, int]] = []
    sk = reader._sort_key
    for skey, key, off, length in _index_range(reader, lo, hi, sk):
        entries.append((key, off, length))
    if not entries:
        return None
    base = entries[0][1]
    end = base
    for _key, off, length in entries:
        if off != end:
            return None
        end = off + length
    bloom = BloomFilter.for_capacity(len(entries), bloom_fp_chance)
    index = bytearray()
    summary: list[list[Any]] = []
    for i in range(0, len(entries), INDEX_BLOCK_ENTRIES):
        chunk = entries[i:i + INDEX_BLOCK_ENTRIES]
        block = msgpack.packb({k: [off - base, length] for k, off, length in chunk}, use_bin_type=True)
        summary.append([chunk[0][0], len(index), len(block)])
        index += block
        for k, _, _ in chunk:
            bloom.add(k)
    parent = reader.stats
    share = len(entries) / max(1, int(parent.get("partitions", 0)) or len(entries))
    stats = {
        "partitions": len(entries), "first_key": entries[0][0], "last_key": entries[-1][0],
        "cells": round(int(parent.get("cells", 0)) * share), "tombstones": round(int(parent.get("tombstones", 0)) * share),
        "min_timestamp": parent.get("min_timestamp"), "max_timestamp": parent.get("max_timestamp"),
        "max_local_deletion_time": parent.get("max_local_deletion_time"),
        "column_bounds": parent.get("column_bounds"),
        "data_bytes": end - base, "replay_position": 0, "origin": "slice", "sliced_from": reader.generation,
        "created_us": parent.get("created_us"),
    }
    crc = 0
    mm = reader._mm
    for pos in range(base, end, _CRC_CHUNK):
        crc = zlib.crc32(mm[pos:min(end, pos + _CRC_CHUNK)], crc)
    blobs = {
        "Index.db": bytes(index),
        "Summary.db": msgpack.packb(summary, use_bin_type=True),
        "Filter.db": bloom.to_bytes(),
        "Statistics.db": msgpack.packb(stats, use_bin_type=True),
    }
    lines = [f"Data.db {crc} {end - base}"] + [f"{c} {zlib.crc32(b)} {len(b)}" for c, b in blobs.items()]
    blobs[DIGEST] = _self_checked(lines)
    blobs[TOC] = _self_checked([*COMPONENTS, DIGEST])
    return Slice(reader.generation, base, end - base, len(entries), crc, blobs)


def _index_range(reader: SSTableReader, lo: Any, hi: Any, sk: Any) -> Any:
    """``(sort_key, key, offset, length)`` of every index entry with ``lo < sort_key <= hi``."""
    i = 0
    if lo is not None:
        i = max(0, bisect.bisect_right(reader._summary_sks, lo) - 1)
    for b in range(i, len(reader._summary)):
        if hi is not None and reader._summary_keys[b][0] > hi:
            return
        for key, (off, length) in reader._block(b).items():
            skey = sk(key)
            if lo is not None and skey <= lo:
                continue
            if hi is not None and skey > hi:
                return
            yield skey, key, off, length
