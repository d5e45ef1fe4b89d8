"""SSTables: immutable sorted files, each a set of components made visible by a TOC written last.

Components of generation ``g`` (see docs/storage.md for byte layouts):

* ``g-Data.db``       partition records in ``(sort_key(key), key)`` order. Each record is
  ``header_len u32 | body_len u32 | header_crc u32 | body_crc u32 | header | body`` where the header
  is msgpack ``[key, pt, pdt, [[prefix, ts, ldt]...], names, ends, crcs]`` and the body is a msgpack
  array of cells ``[value, ts, ttl, ldt]`` sorted by name. ``names`` is one string, every name
  wrapped in NUL separators; ``ends`` and ``crcs`` are little-endian u32 arrays: where each cell ends
  inside the body and the CRC32 of its bytes. Reading one column decodes one small header and one
  cell (no per-column Python objects for the rest of the row) and checks that cell's CRC.
* ``g-Index.db``      blocks of up to ``INDEX_BLOCK_ENTRIES`` msgpack maps ``{key: [offset, length]}``.
* ``g-Summary.db``    msgpack ``[[first_key, block_offset, block_length]...]``: one entry per index
  block, held in memory and searched with bisect.
* ``g-Filter.db``     the bloom filter.
* ``g-Statistics.db`` msgpack map: timestamps, tombstone count, key range, replay position...
* ``g-Digest.crc32``  CRC32 and size of every component above, plus a CRC of itself.
* ``g-TOC.txt``       the component list plus its own CRC; written last (atomically by rename), so
  an SSTable without a TOC is an unfinished write and is deleted at open.

Every record carries CRCs that are checked on each read; the small components are checked whole
when the SSTable is opened; :meth:`SSTableReader.verify` checks the whole data file.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import sys
import threading
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from ..durable import fsync_dir  # noqa: F401 - engine and rangecopy import it from here
from ..runtime import fsync
from .bloom import BloomFilter
from .cells import Cell, Partition, RangeTombstone
from .errors import CorruptSSTableError
from .files import DiskFault
from .keycache import KeyCache, KeySegment

# One summary entry per 32 partitions: a lookup decodes one small msgpack map (a C call) instead of
# walking Cassandra's 128-entry interval in Python, and the summary is still 1/32 of the index.
INDEX_BLOCK_ENTRIES = 32
_REC = struct.Struct("<IIII")
_LENS = struct.Struct("<II")
_U32 = struct.Struct("<I")
_U32_PAIR = struct.Struct("<II")
# Column names are joined with NUL into one string per record (the engine refuses NUL in names).
NAME_SEPARATOR = "\x00"
assert array("I").itemsize == 4, "the u32 arrays of the record header need 4-byte items"
COMPONENTS = ("Data.db", "Index.db", "Summary.db", "Filter.db", "Statistics.db")
DIGEST = "Digest.crc32"
TOC = "TOC.txt"
# Buffered writes in big chunks: fewer syscalls while writing a flush or a compaction.
_WRITE_BUFFER_BYTES = 1 << 20


def component_path(directory: Path, generation: int, component: str) -> Path:
    """Path of one component file of one generation."""
    return directory / f"{generation}-{component}"


def encode_partition(p: Partition) -> bytes:
    """One data record for ``p`` (cells in name order)."""
    names = sorted(p.cells)
    array_head = _array_header(len(names))
    packed = [array_head]
    ends = array("I")
    crcs = array("I")
    size = len(array_head)
    cells = p.cells
    for n in names:
        b = msgpack.packb(cells[n].to_obj(), use_bin_type=True)
        packed.append(b)
        size += len(b)
        ends.append(size)
        crcs.append(zlib.crc32(b))
    if sys.byteorder != "little":
        ends.byteswap()
        crcs.byteswap()
    body = b"".join(packed)
    rts = [[rt.prefix, rt.timestamp, rt.local_deletion_time] for rt in p.range_tombstones.values()]
    names_blob = NAME_SEPARATOR + NAME_SEPARATOR.join(names) + NAME_SEPARATOR if names else NAME_SEPARATOR
    header = msgpack.packb([p.key, p.partition_tombstone, p.partition_deletion_time, rts, names_blob,
                            ends.tobytes(), crcs.tobytes()], use_bin_type=True)
    lens = _LENS.pack(len(header), len(body))
    return _REC.pack(len(header), len(body), zlib.crc32(header, zlib.crc32(lens)), zlib.crc32(body)) + header + body


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


@dataclass(slots=True)
class RawPartition:
    """A partition's data record as bytes, with what the writer's statistics need: compaction's
    path for partitions it need not decode (docs/storage.md, "Compaction")."""

    key: bytes
    record: bytes
    cells: int
    min_timestamp: int
    max_timestamp: int
    # Its least and greatest column name, for the file's column bounds (None: unknown, so the
    # file gets none and no read skips it).
    first_name: str | None = None
    last_name: str | None = None


def encode_record(header: list[Any], body: bytes) -> bytes:
    """A data record from its header fields and its body (the cells' msgpack array)."""
    hdr = msgpack.packb(header, use_bin_type=True)
    lens = _LENS.pack(len(hdr), len(body))
    return _REC.pack(len(hdr), len(body), zlib.crc32(hdr, zlib.crc32(lens)), zlib.crc32(body)) + hdr + body


class SSTableWriter:
    """Writes one SSTable; partitions must arrive in ``(sort_key(key), key)`` order."""

    def __init__(self, directory: Path, generation: int, expected_partitions: int, bloom_fp_chance: float,
                 fault: DiskFault | None = None) -> None:
        self.directory = directory
        self.generation = generation
        # The disk nemesis's switch (node/storage/files.py): a failing data disk refuses the write.
        self._fault = fault
        if fault is not None:
            fault.check_data("create", component_path(directory, generation, "Data.db"))
        self._data = open(component_path(directory, generation, "Data.db"), "wb", buffering=_WRITE_BUFFER_BYTES)
        self._offset = 0
        self._data_crc = 0
        self._index = bytearray()
        self._block: dict[bytes, list[int]] = {}
        self._block_first: bytes | None = None
        self._summary: list[list[Any]] = []
        self._bloom = BloomFilter.for_capacity(expected_partitions, bloom_fp_chance)
        self.stats: dict[str, Any] = {
            "partitions": 0, "cells": 0, "tombstones": 0, "min_timestamp": None, "max_timestamp": None,
            "max_local_deletion_time": None, "first_key": None, "last_key": None, "column_bounds": None,
        }
        # Column bounds stay known while every partition so far had its names known and no
        # partition or range tombstone (either could shadow cells of any name).
        self._bounds_known = True

    def add(self, p: Partition | RawPartition) -> None:
        """Append one partition (skipped when empty), or a record compaction copied as bytes."""
        if isinstance(p, RawPartition):
            self._append(p.key, p.record, p.cells, 0, p.min_timestamp, p.max_timestamp, None)
            self._bound_columns(p.first_name, p.last_name, p.first_name is not None and p.last_name is not None)
            return
        if p.is_empty():
            return
        if p.cells:
            self._bound_columns(min(p.cells), max(p.cells), p.partition_tombstone is None and not p.range_tombstones)
        elif p.partition_tombstone is not None or p.range_tombstones:
            self._bound_columns(None, None, False)
        stamps = [c.timestamp for c in p.cells.values()]
        stamps += [rt.timestamp for rt in p.range_tombstones.values()]
        ldts = [c.local_deletion_time for c in p.cells.values() if c.local_deletion_time is not None]
        ldts += [rt.local_deletion_time for rt in p.range_tombstones.values()
                 if rt.local_deletion_time is not None]
        tombstones = sum(1 for c in p.cells.values() if c.value is None) + len(p.range_tombstones)
        if p.partition_tombstone is not None:
            stamps.append(p.partition_tombstone)
            tombstones += 1
            if p.partition_deletion_time is not None:
                ldts.append(p.partition_deletion_time)
        self._append(p.key, encode_partition(p), len(p.cells), tombstones,
                     min(stamps) if stamps else None, max(stamps) if stamps else None, max(ldts) if ldts else None)

    def _bound_columns(self, first: str | None, last: str | None, known: bool) -> None:
        """Widen the file's column bounds by one partition's names (or give them up)."""
        if not known or not self._bounds_known:
            self._bounds_known = False
            self.stats["column_bounds"] = None
            return
        bounds = self.stats["column_bounds"]
        if bounds is None:
            self.stats["column_bounds"] = [first, last]
        else:
            if first < bounds[0]:  # type: ignore[operator]
                bounds[0] = first
            if last > bounds[1]:  # type: ignore[operator]
                bounds[1] = last

    def _append(self, key: bytes, record: bytes, cells: int, tombstones: int, lo: int | None, hi: int | None,
                max_ldt: int | None) -> None:
        self._data.write(record)
        self._data_crc = zlib.crc32(record, self._data_crc)
        if not self._block:
            self._block_first = key
        self._block[key] = [self._offset, len(record)]
        self._offset += len(record)
        if len(self._block) >= INDEX_BLOCK_ENTRIES:
            self._end_block()
        self._bloom.add(key)
        st = self.stats
        st["partitions"] += 1
        if st["first_key"] is None:
            st["first_key"] = key
        st["last_key"] = key
        st["cells"] += cells
        st["tombstones"] += tombstones
        if lo is not None and hi is not None:
            st["min_timestamp"] = lo if st["min_timestamp"] is None else min(lo, st["min_timestamp"])
            st["max_timestamp"] = hi if st["max_timestamp"] is None else max(hi, st["max_timestamp"])
        if max_ldt is not None:
            st["max_local_deletion_time"] = max(max_ldt, st["max_local_deletion_time"] or 0)

    def _end_block(self) -> None:
        block = msgpack.packb(self._block, use_bin_type=True)
        self._summary.append([self._block_first, len(self._index), len(block)])
        self._index += block
        self._block = {}

    def finish(self, extra_stats: dict[str, Any]) -> int:
        """Write the remaining components, fsync them, then the TOC; returns the data size."""
        if self._block:
            self._end_block()
        if self._fault is not None:
            self._fault.check_data("fsync", component_path(self.directory, self.generation, "Data.db"))
        self._data.flush()
        fsync(self._data.fileno())
        self._data.close()
        stats = dict(self.stats, data_bytes=self._offset, **extra_stats)
        blobs = {
            "Index.db": bytes(self._index),
            "Summary.db": msgpack.packb(self._summary, use_bin_type=True),
            "Filter.db": self._bloom.to_bytes(),
            "Statistics.db": msgpack.packb(stats, use_bin_type=True),
        }
        lines = [f"Data.db {self._data_crc} {self._offset}"]
        for comp, blob in blobs.items():
            _write_file(component_path(self.directory, self.generation, comp), blob)
            lines.append(f"{comp} {zlib.crc32(blob)} {len(blob)}")
        _write_file(component_path(self.directory, self.generation, DIGEST), _self_checked(lines))
        toc_lines = [*COMPONENTS, DIGEST]
        tmp = component_path(self.directory, self.generation, TOC + ".tmp")
        _write_file(tmp, _self_checked(toc_lines))
        os.rename(tmp, component_path(self.directory, self.generation, TOC))
        fsync_dir(self.directory)
        return self._offset

    def abort(self) -> None:
        """Remove whatever was written (used when a flush or compaction fails)."""
        try:
            self._data.close()
        except OSError:
            pass
        remove_generation(self.directory, self.generation)


def restamp(directory: Path, generation: int, updates: dict[str, Any]) -> None:
    """Rewrite one SSTable's Statistics with ``updates`` and its digest to match (TOC untouched).

    A whole-file import uses it: the source's commit log replay position means nothing on the
    target (kept, it would make the target skip its own commit log records at restart).
    """
    stats_path = component_path(directory, generation, "Statistics.db")
    stats = msgpack.unpackb(stats_path.read_bytes(), raw=False)
    stats.update(updates)
    blob = msgpack.packb(stats, use_bin_type=True)
    _write_file(stats_path, blob)
    digest_path = component_path(directory, generation, DIGEST)
    lines = [f"Statistics.db {zlib.crc32(blob)} {len(blob)}" if line.split()[0] == "Statistics.db" else line
             for line in _check_self_checked(digest_path)]
    _write_file(digest_path, _self_checked(lines))


def _self_checked(lines: list[str]) -> bytes:
    text = "".join(line + "\n" for line in lines)
    return (text + f"checksum {zlib.crc32(text.encode())}\n").encode()


def _check_self_checked(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise CorruptSSTableError(str(path), "not valid text") from exc
    body, sep, last = text.rstrip("\n").rpartition("\n")
    if not sep or not last.startswith("checksum "):
        raise CorruptSSTableError(str(path), "missing checksum line")
    body += "\n"
    if last != f"checksum {zlib.crc32(body.encode())}":
        raise CorruptSSTableError(str(path), "checksum mismatch")
    return body.splitlines()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        fsync(f.fileno())


def remove_generation(directory: Path, generation: int) -> None:
    """Delete every component of one generation, TOC first (so it is never half-visible)."""
    component_path(directory, generation, TOC).unlink(missing_ok=True)
    for comp in (*COMPONENTS, DIGEST, TOC + ".tmp"):
        component_path(directory, generation, comp).unlink(missing_ok=True)


def restore_lost_toc(directory: Path, generation: int) -> bool:
    """Rewrite the TOC of a generation that has none but whose every component matches its digest.

    The TOC is written last, so a generation without one is usually a flush or compaction that
    died before it (its data still in the commit log or in its inputs, and removing it loses
    nothing). But a TOC lost afterwards (deleted, or its file gone with a damaged directory)
    leaves a finished SSTable whose commit log segments are long deleted: removing it would lose
    acknowledged writes without a word. A digest that checks and names every component, each of
    the recorded size and CRC, tells the two apart: only a finished write has one. (A compaction's
    inputs being deleted are listed in its obsolete record and never get here.) Returns whether the
    TOC was rewritten; any doubt (a missing or mismatching part, a disk error) is False.
    """
    try:
        digests = {}
        for line in _check_self_checked(component_path(directory, generation, DIGEST)):
            name, crc, size = line.split()
            digests[name] = (int(crc), int(size))
        if sorted(digests) != sorted(COMPONENTS):
            return False
        for comp in COMPONENTS:
            crc = 0
            size = 0
            with open(component_path(directory, generation, comp), "rb") as f:
                while chunk := f.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
                    size += len(chunk)
            if (crc, size) != digests[comp]:
                return False
        tmp = component_path(directory, generation, TOC + ".tmp")
        _write_file(tmp, _self_checked([*COMPONENTS, DIGEST]))
        os.rename(tmp, component_path(directory, generation, TOC))
        fsync_dir(directory)
        return True
    except (OSError, ValueError, CorruptSSTableError):
        return False


class SSTableReader:
    """Read access to one SSTable: bloom filter and key range first, then summary, index, data."""

    def __init__(self, directory: Path, generation: int, sort_key: Callable[[bytes], Any],
                 block_cache_entries: int = 4096, fault: DiskFault | None = None,
                 key_cache: KeyCache | None = None) -> None:
        self.directory = directory
        self.generation = generation
        self._sort_key = sort_key
        self.corrupt: CorruptSSTableError | None = None
        # The disk nemesis's switch: a data disk failing with EIO refuses record reads (an OSError).
        self.fault = fault
        self.data_path = component_path(directory, generation, "Data.db")
        toc = component_path(directory, generation, TOC)
        toc_lines = _check_self_checked(toc)
        if sorted(toc_lines) != sorted([*COMPONENTS, DIGEST]):
            raise CorruptSSTableError(str(toc), f"unexpected component list {toc_lines}")
        digest_path = component_path(directory, generation, DIGEST)
        self.digests: dict[str, tuple[int, int]] = {}
        for line in _check_self_checked(digest_path):
            parts = line.split()
            if len(parts) != 3:
                raise CorruptSSTableError(str(digest_path), f"malformed line {line!r}")
            self.digests[parts[0]] = (int(parts[1]), int(parts[2]))
        blobs = {}
        for comp in COMPONENTS[1:]:
            path = component_path(directory, generation, comp)
            blob = path.read_bytes()
            crc, size = self.digests.get(comp, (None, None))
            if len(blob) != size or zlib.crc32(blob) != crc:
                raise CorruptSSTableError(str(path), "checksum mismatch")
            blobs[comp] = blob
        try:
            self.index = blobs["Index.db"]
            summary = msgpack.unpackb(blobs["Summary.db"], raw=False)
            self.bloom = BloomFilter.from_bytes(blobs["Filter.db"])
            self.stats: dict[str, Any] = msgpack.unpackb(blobs["Statistics.db"], raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise CorruptSSTableError(str(directory / f"{generation}-*"), f"undecodable component: {exc}") from exc
        self._summary_keys = [(sort_key(e[0]), e[0]) for e in summary]
        self._summary_sks = [k[0] for k in self._summary_keys]
        self._summary = summary
        data_crc, data_size = self.digests["Data.db"]
        self.data_bytes = data_size
        actual = self.data_path.stat().st_size
        if actual != data_size:
            raise CorruptSSTableError(str(self.data_path), f"size {actual} != recorded {data_size}")
        # The mapping keeps its own reference to the file, so no descriptor stays open: a reader
        # replaced by compaction is released by the garbage collector when its last user is done.
        self._mm: Any = b""
        if data_size:
            with open(self.data_path, "rb") as f:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        # Unknown (no cells) counts as newest, so the time-ordered read never skips it wrongly.
        max_ts = self.stats.get("max_timestamp")
        self.max_timestamp: int = max_ts if max_ts is not None else (1 << 63) - 1
        # Least and greatest column name of any cell, known only for a file without partition or
        # range tombstones (Cassandra's min/max clustering values): a named read skips the file
        # when none of its names lies inside. Written since the column_bounds stat exists.
        bounds = self.stats.get("column_bounds")
        self.column_bounds: tuple[str, str] | None = None
        if isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, str) for b in bounds):
            self.column_bounds = (bounds[0], bounds[1])
        first, last = self.stats.get("first_key"), self.stats.get("last_key")
        self.first = (sort_key(first), first) if first is not None else None
        self.last = (sort_key(last), last) if last is not None else None
        # Decoded index blocks (Cassandra's key cache, per SSTable): a hot key skips a decode.
        self._blocks: dict[int, dict[bytes, list[int]]] = {}
        self._block_cache_entries = block_cache_entries
        self._lock = threading.Lock()
        # This file's part of the engine's key cache (keycache.py); without one it stays empty.
        self._key_cache = key_cache
        self.cached_keys: KeySegment = key_cache.segment() if key_cache is not None else KeySegment()

    # -- lookup --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The data file's path (what corruption reports name)."""
        return str(self.data_path)

    def might_contain(self, key: bytes, skey: Any) -> bool:
        """Key range and bloom filter check."""
        if self.first is None:
            return False
        probe = (skey, key)
        if probe < self.first or probe > self.last:  # type: ignore[operator]
            return False
        # A decoded index block answers exactly and costs less than the filter's hashing; the
        # filter is for keys whose block would have to be decoded first.
        blk = self._blocks.get(bisect.bisect_right(self._summary_keys, probe) - 1)
        if blk is not None:
            return key in blk
        return self.bloom.might_contain(key)

    def _block(self, i: int) -> dict[bytes, list[int]]:
        blk = self._blocks.get(i)
        if blk is None:
            _, off, length = self._summary[i]
            try:
                blk = msgpack.unpackb(self.index[off:off + length], raw=False)
            except Exception as exc:  # noqa: BLE001 - verified at open, so this is memory trouble
                raise self._fail(f"index block {i} undecodable: {exc}") from exc
            if len(self._blocks) >= self._block_cache_entries:
                self._blocks.clear()
            self._blocks[i] = blk
        return blk

    def _fail(self, detail: str) -> CorruptSSTableError:
        err = CorruptSSTableError(self.name, detail)
        self.corrupt = err
        return err

    def _locate(self, key: bytes, skey: Any) -> list[int] | None:
        i = bisect.bisect_right(self._summary_keys, (skey, key)) - 1
        if i < 0:
            return None
        return self._block(i).get(key)

    def _record(self, offset: int, length: int) -> tuple[list[Any], int, int, int]:
        """Check and decode a record header; returns (header, body offset, body length, body crc)."""
        if self.fault is not None:
            self.fault.check_read(self.data_path)
        mm = self._mm
        if offset + length > self.data_bytes or length < _REC.size:
            raise self._fail(f"index points past the data file at offset {offset}")
        # The file may have been cut short under the running node (truncated by hand, a restore
        # gone wrong): touching a mapped page past its end is SIGBUS, which ends the process with
        # no word. One fstat (mmap.size) per record read turns that into a named corrupt file.
        size = mm.size()
        if offset + length > size:
            raise self._fail(f"data file is {size} bytes, not the {self.data_bytes} written: truncated "
                             f"under the running node (record at offset {offset})")
        hlen, blen, hcrc, bcrc = _REC.unpack_from(mm, offset)
        if _REC.size + hlen + blen != length:
            raise self._fail(f"record at offset {offset}: lengths do not match the index")
        hstart = offset + _REC.size
        header = mm[hstart:hstart + hlen]
        if zlib.crc32(header, zlib.crc32(mm[offset:offset + 8])) != hcrc:
            raise self._fail(f"record header checksum mismatch at offset {offset}")
        try:
            return msgpack.unpackb(header, raw=False), hstart + hlen, blen, bcrc
        except Exception as exc:  # noqa: BLE001 - CRC passed, so this is a writer bug; still refuse
            raise self._fail(f"record at offset {offset} undecodable: {exc}") from exc

    def get(self, key: bytes, skey: Any, columns: list[str] | None = None) -> Partition | None:
        """The partition stored under ``key`` (only ``columns`` when given), or ``None``."""
        if self.corrupt is not None:
            raise self.corrupt
        loc = self._locate(key, skey)
        if loc is None:
            return None
        offset = loc[0]
        header, bstart, blen, bcrc = self._record(offset, loc[1])
        return self._decode(header, bstart, blen, bcrc, columns, offset)

    def find(self, key: bytes, skey: Any, columns: list[str] | None = None) -> Partition | None:
        """``might_contain`` then ``get``, with one summary search for both (the read path's call)."""
        if self.corrupt is not None:
            raise self.corrupt
        loc = self.cached_keys.get(key)
        if loc is None:
            loc = self._index_lookup(key, skey)
            if loc is None:
                return None
        offset = loc[0]
        header, bstart, blen, bcrc = self._record(offset, loc[1])
        return self._decode(header, bstart, blen, bcrc, columns, offset)

    def _index_lookup(self, key: bytes, skey: Any) -> Any:
        """Key range, summary, filter and index block: the record's ``[offset, length]`` or None
        (a key found goes into the key cache)."""
        if self.first is None:
            return None
        if skey is None:  # the engine leaves it to a file its key cache cannot answer
            skey = self._sort_key(key)
        probe = (skey, key)
        if probe < self.first or probe > self.last:  # type: ignore[operator]
            return None
        i = bisect.bisect_right(self._summary_keys, probe) - 1
        blk = self._blocks.get(i)
        if blk is None:
            # The filter first: it spares decoding an index block for a key that is not there.
            if i < 0 or not self.bloom.might_contain(key):
                return None
            blk = self._block(i)
        loc: Any = blk.get(key)
        if loc is not None and self._key_cache is not None:
            self._key_cache.put(self.cached_keys, key, loc)
        return loc

    def release_keys(self) -> None:
        """Give this file's key cache entries back (it left the live set)."""
        if self._key_cache is not None:
            self._key_cache.drop(self.cached_keys)

    def find_named(self, key: bytes, skey: Any, columns: list[str]) -> Partition | None:
        """:meth:`find` of plain column names (no super column), but ``None`` also when the record
        holds none of them and no partition or range tombstone: it cannot change the read."""
        if self.corrupt is not None:
            raise self.corrupt
        loc = self.cached_keys.get(key)
        if loc is None:
            loc = self._index_lookup(key, skey)
            if loc is None:
                return None
        offset = loc[0]
        header, bstart, _blen, _bcrc = self._record(offset, loc[1])
        try:
            hkey, pt, pdt, rts, names_blob, ends, crcs = header
            cells = {}
            for want in columns:
                pos = names_blob.find(NAME_SEPARATOR + want + NAME_SEPARATOR)
                if pos >= 0:
                    cells[want] = self._cell_at(names_blob, pos, want, ends, crcs, bstart, offset)
            if not cells and pt is None and not rts:
                return None
            return Partition(bytes(hkey), cells, pt, pdt, {r[0]: RangeTombstone(r[0], r[1], r[2]) for r in rts})
        except (ValueError, TypeError, IndexError, struct.error, msgpack.UnpackException) as exc:
            raise self._fail(f"record at offset {offset} undecodable: {exc}") from exc

    def _decode(self, header: list[Any], bstart: int, blen: int, bcrc: int, columns: list[str] | None,
                offset: int) -> Partition:
        key, pt, pdt, rts, names_blob, ends, crcs = header
        try:
            if columns is None:
                body = self._mm[bstart:bstart + blen]
                if zlib.crc32(body) != bcrc:
                    raise self._fail(f"record body checksum mismatch at offset {offset}")
                objs = msgpack.unpackb(body, raw=False)
                names = names_blob[1:-1].split(NAME_SEPARATOR) if objs else []
                cells = {n: Cell(n, o[0], o[1], o[2], o[3]) for n, o in zip(names, objs)}
            else:
                cells = {}
                for want in columns:
                    if want.endswith(":"):  # a whole super column: contiguous names with this prefix
                        pos = names_blob.find(NAME_SEPARATOR + want)
                        while pos >= 0:
                            stop = names_blob.find(NAME_SEPARATOR, pos + 1)
                            name = names_blob[pos + 1:stop]
                            if not name.startswith(want):
                                break
                            cells[name] = self._cell_at(names_blob, pos, name, ends, crcs, bstart, offset)
                            pos = stop if stop + 1 < len(names_blob) else -1
                    else:
                        pos = names_blob.find(NAME_SEPARATOR + want + NAME_SEPARATOR)
                        if pos >= 0:
                            cells[want] = self._cell_at(names_blob, pos, want, ends, crcs, bstart, offset)
        except (ValueError, TypeError, IndexError, struct.error, msgpack.UnpackException) as exc:
            raise self._fail(f"record at offset {offset} undecodable: {exc}") from exc
        return Partition(bytes(key), cells, pt, pdt, {r[0]: RangeTombstone(r[0], r[1], r[2]) for r in rts})

    def _cell_at(self, names_blob: str, pos: int, name: str, ends: bytes, crcs: bytes, bstart: int,
                 offset: int) -> Cell:
        i = names_blob.count(NAME_SEPARATOR, 0, pos)  # the cell's index among the sorted names
        if i:
            start, end = _U32_PAIR.unpack_from(ends, 4 * (i - 1))
        else:
            start, end = _array_header_len(len(ends) // 4), _U32.unpack_from(ends, 0)[0]
        raw = self._mm[bstart + start:bstart + end]
        if zlib.crc32(raw) != _U32.unpack_from(crcs, 4 * i)[0]:
            raise self._fail(f"cell {name!r} checksum mismatch in record at offset {offset}")
        o = msgpack.unpackb(raw, raw=False)
        return Cell(name, o[0], o[1], o[2], o[3])

    # -- sequential access ---------------------------------------------------------------------

    def iter_range(self, start: Any = None, end: Any = None) -> Iterator[tuple[Any, Partition]]:
        """Yield ``(sort_key, partition)`` with ``start < sort_key <= end`` (``None`` = unbounded)."""
        if self.corrupt is not None:
            raise self.corrupt
        sk = self._sort_key
        nblocks = len(self._summary)
        i = 0
        if start is not None:
            # Keys after ``start`` begin in the last block whose first sort key is <= start.
            i = max(0, bisect.bisect_right(self._summary_sks, start) - 1)
        for b in range(i, nblocks):
            if end is not None and self._summary_keys[b][0] > end:
                return
            for key, (off, length) in self._block(b).items():
                skey = sk(key)
                if start is not None and skey <= start:
                    continue
                if end is not None and skey > end:
                    return
                header, bstart, blen, bcrc = self._record(off, length)
                yield skey, self._decode(header, bstart, blen, bcrc, None, off)

    def iter_raw(self) -> Iterator[tuple[Any, bytes, list[Any], bytes, int, int]]:
        """Yield ``(sort_key, key, header, record, body_start, offset)`` for every partition in order:
        the record as bytes with both its CRCs checked, its header decoded, where its body begins
        in it, and where it begins in the data file (:meth:`decode_record` decodes it)."""
        if self.corrupt is not None:
            raise self.corrupt
        sk = self._sort_key
        mm = self._mm
        crc32 = zlib.crc32
        for b in range(len(self._summary)):
            for key, (off, length) in self._block(b).items():
                header, bstart, _blen, bcrc = self._record(off, length)
                record = mm[off:off + length]
                start = bstart - off
                if crc32(memoryview(record)[start:]) != bcrc:
                    raise self._fail(f"record body checksum mismatch at offset {off}")
                yield sk(key), key, header, record, start, off

    def decode_record(self, header: list[Any], record: bytes, start: int, offset: int) -> Partition:
        """The partition of a record from :meth:`iter_raw` (CRCs already checked)."""
        key, pt, pdt, rts, names_blob, _ends, _crcs = header
        try:
            objs = msgpack.unpackb(memoryview(record)[start:], raw=False)
            names = names_blob[1:-1].split(NAME_SEPARATOR) if objs else []
            cells = {n: Cell(n, o[0], o[1], o[2], o[3]) for n, o in zip(names, objs)}
        except (ValueError, TypeError, IndexError, struct.error, msgpack.UnpackException) as exc:
            raise self._fail(f"record at offset {offset} undecodable: {exc}") from exc
        return Partition(bytes(key), cells, pt, pdt, {r[0]: RangeTombstone(r[0], r[1], r[2]) for r in rts})

    def scan_stats(self) -> dict[str, Any]:
        """The statistics the writer records, counted again from the data file itself (as
        ``sstabledump`` would see them), for comparison with ``stats`` (``sstablemetadata``):
        partitions, cells, tombstones, the least and greatest timestamp of any cell, range
        tombstone or partition delete, the greatest local deletion time, the first and last key.
        Raises :class:`CorruptSSTableError` on a damaged record."""
        partitions = cells = tombstones = 0
        lo: int | None = None
        hi: int | None = None
        max_ldt: int | None = None
        first: bytes | None = None
        last: bytes | None = None
        for _sk, key, header, record, start, off in self.iter_raw():
            p = self.decode_record(header, record, start, off)
            partitions += 1
            first = bytes(key) if first is None else first
            last = bytes(key)
            cells += len(p.cells)
            stamps = [c.timestamp for c in p.cells.values()] + [rt.timestamp for rt in p.range_tombstones.values()]
            ldts = [c.local_deletion_time for c in p.cells.values() if c.local_deletion_time is not None]
            ldts += [rt.local_deletion_time for rt in p.range_tombstones.values() if rt.local_deletion_time is not None]
            tombstones += sum(1 for c in p.cells.values() if c.value is None) + len(p.range_tombstones)
            if p.partition_tombstone is not None:
                stamps.append(p.partition_tombstone)
                tombstones += 1
                if p.partition_deletion_time is not None:
                    ldts.append(p.partition_deletion_time)
            if stamps:
                lo = min(stamps) if lo is None else min(lo, *stamps)
                hi = max(stamps) if hi is None else max(hi, *stamps)
            if ldts:
                max_ldt = max(ldts) if max_ldt is None else max(max_ldt, *ldts)
        return {"partitions": partitions, "cells": cells, "tombstones": tombstones, "min_timestamp": lo,
                "max_timestamp": hi, "max_local_deletion_time": max_ldt, "first_key": first, "last_key": last}

    def verify(self) -> None:
        """Check the whole data file against its recorded CRC; raise :class:`CorruptSSTableError`."""
        if self.fault is not None:
            self.fault.check_read(self.data_path)
        if self.data_bytes and self._mm.size() < self.data_bytes:  # see _record: SIGBUS otherwise
            raise self._fail(f"data file is {self._mm.size()} bytes, not the {self.data_bytes} written: "
                             "truncated under the running node")
        crc = zlib.crc32(self._mm) if self.data_bytes else 0
        if crc != self.digests["Data.db"][0]:
            raise self._fail("data file checksum mismatch")

    def close(self) -> None:
        """Release the mapping, the file descriptor and the key cache entries."""
        self.release_keys()
        with self._lock:
            if isinstance(self._mm, mmap.mmap):
                try:
                    self._mm.close()
                except BufferError:
                    pass  # a reader still holds a view; the GC will release it
            self._mm = b""

    def files(self) -> list[Path]:
        """Every component path, TOC last."""
        return [component_path(self.directory, self.generation, c) for c in (*COMPONENTS, DIGEST, TOC)]


def _array_header_len(n: int) -> int:
    """Bytes of a msgpack array header for ``n`` elements."""
    return 1 if n < 16 else 3 if n < 1 << 16 else 5
