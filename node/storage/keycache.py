"""The key cache (Cassandra's): partition key -> where its record lies in one SSTable's Data.db.

A hit skips the SSTable's key-range check, the summary search, the index block and the sort
key (the partitioner's token, pure-Python Murmur3, the costliest step of a read that hits).
Only keys found in a file are cached (the bloom filter and the decoded index blocks answer for
absent ones). Each SSTable reader owns one segment (an ordered dict the read path probes with
no lock); the cache bounds the entries of all segments together, and a reader leaving the live
set (compacted away, quarantined, discarded, dropped) gives its segment back. An SSTable is
immutable, so an entry is never stale while its reader lives; the record's CRCs are still
checked on every read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

# Data file offset and record length, as the index holds them.
Location = tuple[int, int]


class KeySegment(OrderedDict[bytes, Location]):
    """One SSTable's entries, oldest first (the order entries are evicted in)."""

    __slots__ = ("dropped",)

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False


class KeyCache:
    """Bounded in entries over every segment; when full, an insert evicts the oldest entry of the
    segment holding the most (a hot new SSTable takes room from old ones, never all of it)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._segments: list[KeySegment] = []
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def segment(self) -> KeySegment:
        """A new empty segment for one SSTable reader."""
        seg = KeySegment()
        with self._lock:
            self._segments.append(seg)
        return seg

    def put(self, seg: KeySegment, key: bytes, loc: Location) -> None:
        """Remember ``key``'s location in ``seg``'s SSTable (nothing once the segment is dropped)."""
        if self.capacity == 0:
            return
        with self._lock:
            if seg.dropped or key in seg:
                return
            if self._size >= self.capacity:
                victim = max(self._segments, key=len)
                victim.popitem(last=False)
                self._size -= 1
            seg[key] = loc
            self._size += 1

    def drop(self, seg: KeySegment) -> None:
        """Forget a segment whose SSTable left the live set (idempotent)."""
        with self._lock:
            if seg.dropped:
                return
            seg.dropped = True
            self._size -= len(seg)
            seg.clear()
            self._segments.remove(seg)
