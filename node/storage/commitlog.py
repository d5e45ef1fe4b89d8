"""The commit log: segmented append-only files of CRC-framed mutation records.

Segment file ``CommitLog-<id>.log``::

    header  = magic "RLCL" | version u16 | segment id u64 | crc32(previous 14 bytes) u32
    record* = length u32 | crc32(length bytes + payload) u32 | payload (msgpack [table_id, mutation])

A position is ``segment_id << 32 | end offset of the record``: positions grow monotonically across
segments, so "everything up to position P" is one integer comparison.

Segments are written through a :class:`~node.storage.files.FileOps` door. With the default OS
files every append is written to the OS at once, so a *process* crash never loses an
acknowledged record in any mode; the sync mode decides when ``fsync`` makes records survive an
*OS* crash or power loss (with ``volatile_unsynced`` files a process crash is such a loss):

* ``periodic``: :meth:`CommitLog.sync` is called every period by the node (acknowledge at once);
* ``batch``: callers of :meth:`CommitLog.wait_durable` block until an fsync covers their record; a
  single leader fsyncs on behalf of every waiter (writes from many threads coalesce);
* ``group``: like batch, but the leader first waits until ``window`` has passed since the previous
  fsync, so there is at most one fsync per window and the whole group is acknowledged together.
"""

from __future__ import annotations

# io.open rather than the builtin: looked up at each call in the compiled build too, so the
# tests' file-fault shim (tests/unit/nth_fault.py) sees these files opened.
import io
import logging
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from ..durable import fsync_dir
from ..runtime import Clock, fsync
from .errors import CommitLogCorrupt, CommitLogError, CommitLogSyncFailed, StorageFailure, disk_error
from .files import AppendFile, FileOps, OSFiles

log = logging.getLogger("ringlab.storage.commitlog")

SEGMENT_MAGIC = b"RLCL"
SEGMENT_VERSION = 1
_SEG_HEADER = struct.Struct("<4sHQ")
_CRC = struct.Struct("<I")
SEGMENT_HEADER_BYTES = _SEG_HEADER.size + _CRC.size
_REC_HEADER = struct.Struct("<II")
_LEN = struct.Struct("<I")
_SEGMENT_RE = re.compile(r"^CommitLog-(\d{16})\.log$")
# Offsets live in the low 32 bits of a position; a segment never grows past this.
_MAX_SEGMENT_BYTES = (1 << 32) - 1
# When looking for valid records after damage, candidate lengths are capped at the largest record
# seen in the segment, but at least this (a small log may not have shown its typical size yet).
_RESYNC_MIN_RECORD = 64 * 1024
REPLAY_POLICIES = ("stop", "skip_corrupt")
# The table id of a fence record: written (and fsynced) in a fresh segment right after an fsync
# failed, naming each segment whose bytes from an offset on that fsync left at risk (fsyncgate: the
# kernel may have dropped those pages), so a restart can tell that damage there is what the failed
# fsync cost and not corruption. Table ids start at 1, so no mutation record has it; its payload
# starts with these bytes (msgpack: a two-element array, then -1).
_FENCE_TABLE = -1
_FENCE_PREFIX = b"\x92\xff"
COMMIT_FAILURE_POLICIES = ("stop", "die", "ignore")


def make_position(segment_id: int, offset: int) -> int:
    """Pack a segment id and an end offset into one comparable position."""
    return (segment_id << 32) | offset


def position_segment(position: int) -> int:
    """The segment id a position belongs to."""
    return position >> 32


@dataclass
class _Segment:
    id: int
    path: Path
    file: AppendFile | None
    size: int
    # table id -> position of the last record of that table in this segment
    dirty: dict[int, int] = field(default_factory=dict)
    # ids of the segments a fence record in this one names: it is kept while any of them exists
    fences: set[int] = field(default_factory=set)


@dataclass
class ReplayReport:
    """What replay found: records read, and every truncation with its file and byte offset."""

    records: int = 0
    applied: int = 0  # set by the engine: records not already in an SSTable
    segments: int = 0
    truncations: list[tuple[str, int, str]] = field(default_factory=list)
    # skip_corrupt only: (file, offset, problem, bytes skipped) for every damaged range passed over
    skipped: list[tuple[str, int, str, int]] = field(default_factory=list)
    # damage a fence record explains (a failed fsync at runtime): (file, offset, problem, bytes),
    # replayed around whatever commitlog_replay says; a subset of ``skipped``
    fenced: list[tuple[str, int, str, int]] = field(default_factory=list)


@dataclass
class _Scan:
    """What the checksum pass found in one segment."""

    size: int
    header_ok: bool
    records: list[tuple[int, int]] = field(default_factory=list)  # payload (start, end) offsets
    damage: list[tuple[int, str]] = field(default_factory=list)  # (offset, problem) per damaged range
    lost: list[int] = field(default_factory=list)  # bytes skipped per damaged range
    resumed: bool = False  # a valid record follows some damage in this segment
    fences: list[tuple[int, int]] = field(default_factory=list)  # payload (start, end) of fence records


def _frame(payload: bytes) -> bytes:
    """One record: length, CRC32 of length and payload, payload."""
    lenb = _LEN.pack(len(payload))
    return lenb + _CRC.pack(zlib.crc32(payload, zlib.crc32(lenb))) + payload


def _retire(seg: _Segment) -> None:
    """Close a segment's file for good (after a failed fsync: what it holds is fenced)."""
    f, seg.file = seg.file, None
    if f is not None:
        try:
            f.close()
        except OSError as exc:
            log.error("commit log segment %s: close failed: %s", seg.path, exc)


def _record_at(data: bytes, offset: int, max_len: int) -> tuple[int, str | None]:
    """``(end, None)`` for a valid record at ``offset``, else ``(0, problem)``."""
    end = len(data)
    if end - offset < _REC_HEADER.size:
        return 0, "torn record header"
    length, crc = _REC_HEADER.unpack_from(data, offset)
    start = offset + _REC_HEADER.size
    if start + length > end:
        return 0, f"torn record (length {length} runs past end of file)"
    if length > max_len:
        return 0, f"record length {length} is over the largest possible"
    if zlib.crc32(data[start:start + length], zlib.crc32(data[offset:offset + 4])) != crc:
        return 0, "record checksum mismatch"
    return start + length, None


def _resync(data: bytes, offset: int, max_len: int) -> int | None:
    """The first offset after ``offset`` where a valid record starts, or None.

    Records carry no sync marker, so every byte offset is tried; a random match needs a plausible
    length and a 32-bit checksum hit (about one in four billion), and candidate lengths are capped
    at the largest record seen, so the scan stays linear in practice.
    """
    for candidate in range(offset + 1, len(data) - _REC_HEADER.size + 1):
        length = _LEN.unpack_from(data, candidate)[0]
        if length == 0 or length > max_len or candidate + _REC_HEADER.size + length > len(data):
            continue
        if _record_at(data, candidate, max_len)[1] is None:
            return candidate
    return None


def _scan_segment(data: bytes, seg_id: int) -> _Scan:
    """Checksum every record of one segment; find damaged ranges and the records after them."""
    scan = _Scan(len(data), len(data) >= SEGMENT_HEADER_BYTES and CommitLog._header_ok(data, seg_id))
    if not scan.header_ok:
        scan.damage.append((0, "missing or corrupt segment header"))
        if len(data) <= SEGMENT_HEADER_BYTES:
            scan.lost.append(len(data))
            return scan
    offset = SEGMENT_HEADER_BYTES
    biggest = _RESYNC_MIN_RECORD
    if not scan.header_ok:
        nxt = _resync(data, offset - 1, _MAX_SEGMENT_BYTES)
        scan.lost.append((nxt if nxt is not None else len(data)))
        if nxt is None:
            return scan
        offset, scan.resumed = nxt, True
    while offset < len(data):
        end, problem = _record_at(data, offset, _MAX_SEGMENT_BYTES)
        if problem is None:
            scan.records.append((offset + _REC_HEADER.size, end))
            if data[offset + _REC_HEADER.size:offset + _REC_HEADER.size + 2] == _FENCE_PREFIX:
                scan.fences.append(scan.records[-1])
            biggest = max(biggest, end - offset)
            offset = end
            continue
        scan.damage.append((offset, problem))
        nxt = _resync(data, offset, biggest)
        scan.lost.append((nxt if nxt is not None else len(data)) - offset)
        if nxt is None:
            break
        offset, scan.resumed = nxt, True
    return scan


class CommitLog:
    """Segmented commit log with periodic, batch and group sync; thread-safe."""

    def __init__(self, directory: Path, *, sync_mode: str, segment_bytes: int, group_window_s: float,
                 clock: Clock, replay_policy: str = "stop", sticky_failure: bool = True,
                 files: FileOps | None = None) -> None:
        self.directory = directory
        self.files: FileOps = files or OSFiles()
        self.replay_policy = replay_policy
        # True (commit_failure_policy stop/die): after one failed fsync nothing more is ever
        # acknowledged by this log. False (ignore): only the writes that fsync covered fail.
        self.sticky_failure = sticky_failure
        self._failure: StorageFailure | None = None
        # Position ranges (lo, hi] a failed fsync covered: no record in one is ever acknowledged,
        # whatever a later fsync says (under ignore the failure is not sticky).
        self._failed_ranges: list[tuple[int, int]] = []
        # (segment id, offset) a failed fsync left at risk and no durable fence record names yet:
        # while any is pending, appends first try to write that fence (see _fence).
        self._unfenced: list[tuple[int, int]] = []
        self.sync_mode = sync_mode
        self.segment_bytes = min(segment_bytes, _MAX_SEGMENT_BYTES)
        self.group_window_s = group_window_s
        self._clock = clock
        self._lock = threading.Lock()  # appends, segment list
        self._cond = threading.Condition(threading.Lock())  # durability waiters
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        self._written = 0  # position of the last appended record
        self._synced = 0  # every record at or before this position is fsynced
        self._syncing = False
        # How many fsync rounds a writer led (writers that join a round add none).
        self.syncs_led = 0
        self._last_sync = clock.monotonic()
        self._flushed: dict[int, int] = {}  # table id -> every record <= this is in an SSTable
        self._closed = False

    # -- opening and replay ------------------------------------------------------------------

    def replay(self) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(position, table_id, mutation_obj)`` from existing segments.

        Must be exhausted before :meth:`start`. Damage with no valid record after it anywhere in
        the log is a torn tail (a crash mid-append): it is reported with its file and byte offset
        on the ``ringlab.storage.commitlog`` logger and truncated. Damage *followed by* valid
        records cannot come from a crash: it raises :class:`CommitLogCorrupt` naming the file and
        offset, unless ``replay_policy`` is ``"skip_corrupt"``, which logs every skipped byte
        range and record and replays the rest (Cassandra stops on such a log too).
        """
        self.report = ReplayReport()
        self.directory.mkdir(parents=True, exist_ok=True)
        ids = sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := _SEGMENT_RE.match(p.name)))
        # Pass 1: checksums only, every segment, so we know whether valid records follow a damage.
        scans = [(seg_id, _scan_segment(self.files.read(self._path(seg_id)), seg_id)) for seg_id in ids]
        at_risk, fenced_by = self._read_fences(scans)
        for i, (seg_id, scan) in enumerate(scans):
            path = self._path(seg_id)
            later = any(s.records for _, s in scans[i + 1:])
            seg = _Segment(seg_id, path, None, scan.size, fences=fenced_by.get(seg_id, set()))
            if scan.damage and (later or scan.resumed):
                offset, problem = scan.damage[0]
                risk = at_risk.get(seg_id)
                if risk is not None and offset >= risk[0]:
                    self._skip_fenced(path, scan, risk[1])
                elif self.replay_policy != "skip_corrupt":
                    raise CommitLogCorrupt(str(path), offset, problem)
                else:
                    for (off, prob), lost in zip(scan.damage, scan.lost):
                        log.error("commit log %s: %s at byte offset %d; skipping %d bytes (skip_corrupt): the "
                                  "records in them are lost", path, prob, off, lost)
                        self.report.skipped.append((str(path), off, prob, lost))
            elif scan.damage:
                offset, problem = scan.damage[0]
                if not scan.header_ok:
                    self._truncate(seg, 0, problem, scan.size)
                    path.unlink()
                    continue
                self._truncate(seg, offset, problem, scan.size)
            if not scan.header_ok and not scan.records:
                path.unlink()
                continue
            self.report.segments += 1
            self._segments.append(seg)
            data = self.files.read(path) if scan.records else b""
            for start, end in scan.records:
                try:
                    table_id, obj = msgpack.unpackb(data[start:end], raw=False, strict_map_key=False)
                except Exception as exc:  # noqa: BLE001 - a record with a good checksum that does not decode
                    if self.replay_policy != "skip_corrupt":
                        raise CommitLogCorrupt(str(path), start - _REC_HEADER.size,
                                               f"undecodable record ({exc})") from exc
                    log.error("commit log %s: undecodable record at byte offset %d skipped (skip_corrupt): %s",
                              path, start - _REC_HEADER.size, exc)
                    self.report.skipped.append((str(path), start - _REC_HEADER.size, "undecodable record",
                                                end - start + _REC_HEADER.size))
                    continue
                if table_id == _FENCE_TABLE:
                    continue
                pos = make_position(seg_id, end)
                seg.dirty[table_id] = pos
                self.report.records += 1
                yield pos, table_id, obj
            self._written = max(self._written, make_position(seg_id, seg.size))
        self._synced = self._written

    def _read_fences(self, scans: list[tuple[int, _Scan]]) -> tuple[dict[int, tuple[int, str]], dict[int, set[int]]]:
        """From every fence record: segment id -> (the lowest offset a failed fsync left at risk
        there, the sync mode then), and fence segment id -> the segment ids it names."""
        at_risk: dict[int, tuple[int, str]] = {}
        fenced_by: dict[int, set[int]] = {}
        for seg_id, scan in scans:
            if not scan.fences:
                continue
            data = self.files.read(self._path(seg_id))
            for start, end in scan.fences:
                try:
                    _, body = msgpack.unpackb(data[start:end], raw=False, strict_map_key=False)
                    mode = str(body["mode"])
                    named = [(int(s), int(o)) for s, o in body["at_risk"]]
                except Exception as exc:  # noqa: BLE001 - a fence that does not decode explains nothing
                    log.error("commit log segment %d: undecodable fence record at byte offset %d ignored: %s",
                              seg_id, start - _REC_HEADER.size, exc)
                    continue
                for sid, off in named:
                    if sid not in at_risk or off < at_risk[sid][0]:
                        at_risk[sid] = (off, mode)
                    fenced_by.setdefault(seg_id, set()).add(sid)
        return at_risk, fenced_by

    def _skip_fenced(self, path: Path, scan: _Scan, mode: str) -> None:
        """Replay around damage a fence record explains, saying what was skipped and why."""
        acked = ("none of the writes in them was acknowledged (commitlog_sync = %s acknowledges a write only "
                 "after an fsync covering it succeeded)" % mode if mode != "periodic" else
                 "writes in them may have been acknowledged: commitlog_sync = periodic promises durability only "
                 "up to the last fsync that succeeded, and this one failed")
        for (off, prob), lost in zip(scan.damage, scan.lost):
            log.error("commit log %s: %s at byte offset %d; skipping %d bytes: an fsync of this segment failed "
                      "at runtime (a fence record says so), so the kernel may have dropped these pages "
                      "(fsyncgate); %s; the records after them are replayed", path, prob, off, lost, acked)
            entry = (str(path), off, f"{prob} (after a failed fsync)", lost)
            self.report.skipped.append(entry)
            self.report.fenced.append(entry)

    def _truncate(self, seg: _Segment, offset: int, problem: str, end: int) -> None:
        log.warning("commit log %s: %s at byte offset %d; truncating %d trailing bytes",
                    seg.path, problem, offset, end - offset)
        self.report.truncations.append((str(seg.path), offset, problem))
        with io.open(seg.path, "r+b") as f:
            f.truncate(offset)
            fsync(f.fileno())
        seg.size = offset

    @staticmethod
    def _header_ok(data: bytes, seg_id: int) -> bool:
        magic, version, sid = _SEG_HEADER.unpack_from(data)
        (crc,) = _CRC.unpack_from(data, _SEG_HEADER.size)
        return (magic == SEGMENT_MAGIC and version == SEGMENT_VERSION and sid == seg_id
                and zlib.crc32(data[:_SEG_HEADER.size]) == crc)

    def start(self) -> None:
        """Open a fresh active segment after replay."""
        next_id = max((s.id for s in self._segments), default=0) + 1
        with self._lock:
            self._roll(next_id)

    def _path(self, seg_id: int) -> Path:
        return self.directory / f"CommitLog-{seg_id:016d}.log"

    def _roll(self, seg_id: int) -> None:
        """Open segment ``seg_id`` as the active one; a disk that refuses it raises DiskFull
        (ENOSPC) or StorageFailure, so the commit failure policy applies as to a refused append,
        and leaves no headerless segment behind for a replay to stumble on."""
        path = self._path(seg_id)
        f = None
        try:
            f = self.files.create(path)
            header = _SEG_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, seg_id)
            f.write(header + _CRC.pack(zlib.crc32(header)))
            fsync_dir(self.directory)
        except OSError as exc:
            if f is not None:
                try:
                    f.close()
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # replay takes a segment without a header as torn, and truncates it
            raise disk_error(exc, path, "commit log segment creation") from exc
        seg = _Segment(seg_id, path, f, SEGMENT_HEADER_BYTES)
        self._segments.append(seg)
        self._active = seg

    # -- writing -------------------------------------------------------------------------------

    def append(self, table_id: int, mutation_obj: Any) -> int:
        """Write one record and return its position (durable per :meth:`wait_durable`)."""
        return self.append_payload(table_id, msgpack.packb([table_id, mutation_obj], use_bin_type=True))

    def append_payload(self, table_id: int, payload: bytes) -> int:
        """Write one already encoded ``[table_id, mutation]`` record; returns its position."""
        # A coordinator's own replica appends one record per write: the common case (the
        # segment has room) without append_payloads' lists and loops, with the same checks.
        record = _frame(payload)
        with self._lock:
            refusal = self._refusal()
            if refusal is not None:
                raise refusal
            seg = self._active
            assert seg is not None
            if seg.size + len(record) <= self.segment_bytes or seg.size <= SEGMENT_HEADER_BYTES:
                positions: list[int] = []
                error = self._write_chunk(seg, [record], [table_id], positions)
                if error is not None:
                    raise error
                return positions[0]
        # The segment is full: append_payloads rolls it.
        positions, error = self.append_payloads([(table_id, payload)])
        if error is not None:
            raise error
        return positions[0]

    def append_payloads(self, records: list[tuple[int, bytes]]) -> tuple[list[int], StorageFailure | None]:
        """Write encoded ``(table_id, [table_id, mutation])`` records in order, with one write per
        segment they land in; returns the positions of those written and, if a write failed, its
        error (DiskFull or StorageFailure: the records from the first of that write on were not
        kept). A replica appends every mutation of one read this way: one syscall, not one each."""
        framed = [_frame(payload) for _, payload in records]
        positions: list[int] = []
        with self._lock:
            refusal = self._refusal()
            if refusal is not None:
                return positions, refusal
            seg = self._active
            assert seg is not None
            chunk: list[bytes] = []
            chunk_tables: list[int] = []
            size = seg.size
            for (table_id, _), record in zip(records, framed):
                if size + len(record) > self.segment_bytes and size > SEGMENT_HEADER_BYTES:
                    if chunk:
                        error = self._write_chunk(seg, chunk, chunk_tables, positions)
                        if error is not None:
                            return positions, error
                        chunk, chunk_tables = [], []
                    try:
                        self._roll(seg.id + 1)
                    except StorageFailure as failure:
                        return positions, failure
                    seg = self._active
                    assert seg is not None
                    size = seg.size
                chunk.append(record)
                chunk_tables.append(table_id)
                size += len(record)
            if chunk:
                error = self._write_chunk(seg, chunk, chunk_tables, positions)
                if error is not None:
                    return positions, error
            return positions, None

    def _refusal(self) -> StorageFailure | None:
        """Why no record may be appended now (under the lock): a sticky failure (stop, die), or a
        failed fsync whose fence record is not durable yet and cannot be written now either."""
        if self._active is None or self._closed:
            raise CommitLogError("commit log is not open")
        if self._failure is not None and self.sticky_failure:
            return self._failure
        return self._write_fence() if self._unfenced else None

    def _write_fence(self) -> StorageFailure | None:
        """Roll to a fresh segment and write and fsync a fence record there naming every segment
        offset a failed fsync left at risk (under the lock); None once it is durable.

        A record acknowledged later sits after the fence and was fsynced after it, so a restart
        that finds damage at or past a fenced offset knows it is what the failed fsync cost (the
        kernel may have dropped those pages: fsyncgate) and replays around it, where it would
        otherwise refuse the log as corrupt. Until a fence is durable nothing more is appended."""
        assert self._active is not None
        try:
            self._roll(self._active.id + 1)
        except StorageFailure as failure:
            return failure
        seg = self._active
        body = {"at_risk": [list(r) for r in self._unfenced], "mode": self.sync_mode}
        record = _frame(msgpack.packb([_FENCE_TABLE, body], use_bin_type=True))
        try:
            seg.file.write(record)  # type: ignore[union-attr]
            seg.size += len(record)
            seg.file.fsync()  # type: ignore[union-attr]
        except OSError as exc:
            # This segment is at risk itself now (a torn or unsynced fence): the next fence names it.
            self._unfenced.append((seg.id, 0))
            _retire(seg)
            return disk_error(exc, seg.path, "commit log fence record write")
        seg.fences |= {sid for sid, _ in self._unfenced}
        log.warning("commit log: fence record written to %s: a restart replays around damage in %s (what the "
                    "failed fsync may have cost)", seg.path,
                    ", ".join(f"segment {sid} from byte {off}" for sid, off in self._unfenced))
        self._unfenced = []
        return None

    def _fence_failed(self, seg: _Segment, target: int) -> int:
        """After an fsync of ``seg`` failed: retire it (never written or fsynced again) and fence it;
        returns the position up to which no record is ever acknowledged."""
        synced = self._synced  # only the sync leader, the caller, moves it
        start = synced & _MAX_SEGMENT_BYTES if position_segment(synced) == seg.id else 0
        with self._lock:
            upto = max(target, make_position(seg.id, seg.size))
            self._unfenced.append((seg.id, start))
            _retire(seg)
            failure = self._write_fence()
        if failure is not None:
            log.error("commit log: no fence record after the failed fsync of %s (%s)%s", seg.path, failure,
                      "" if self.sticky_failure else "; appends are refused until one is written")
        return upto

    def _write_chunk(self, seg: _Segment, chunk: list[bytes], tables: list[int], positions: list[int]) -> StorageFailure | None:
        """Append records to ``seg`` in one write (under the lock); their positions go to ``positions``."""
        try:
            seg.file.write(chunk[0] if len(chunk) == 1 else b"".join(chunk))  # type: ignore[union-attr]
        except OSError as exc:
            # Cut a partial record off so later records are not hidden behind a torn one.
            try:
                seg.file.truncate(seg.size)  # type: ignore[union-attr]
            except OSError:
                pass  # ftruncate to a smaller size needs no space; if it fails, replay truncates
            failure = disk_error(exc, seg.path, "commit log append")
            failure.__cause__ = exc
            return failure
        size = seg.size
        base = seg.id << 32
        dirty = seg.dirty
        for record, table_id in zip(chunk, tables):
            size += len(record)
            dirty[table_id] = pos = base | size
            positions.append(pos)
        seg.size = size
        self._written = positions[-1]
        return None

    def current_position(self) -> int:
        """Position of the last appended record."""
        with self._lock:
            return self._written

    # -- durability -----------------------------------------------------------------------------

    def sync(self) -> int:
        """fsync everything appended so far; returns the position now durable."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._syncing = True
        return self._lead_sync()

    def _lead_sync(self) -> int:
        self.syncs_led += 1
        target = 0
        failure: StorageFailure | None = None
        failed_seg: _Segment | None = None
        try:
            with self._lock:
                target = self._written
                todo = [(s, s.file) for s in self._segments if s.file is not None]
                active = self._active
            for seg, f in todo:
                try:
                    f.fsync()
                except OSError as exc:
                    failed_seg = seg
                    failure = CommitLogSyncFailed(str(seg.path), f"commit log fsync failed: {exc}")
                    raise failure from exc
            with self._lock:
                for seg, f in todo:
                    if seg is not self._active and seg.file is f:
                        if seg is active:
                            # It was rolled while we synced: records appended after our fsync
                            # began are covered by the position the next sync claims, so sync
                            # them now, before the file is closed for good.
                            failed_seg = seg
                            f.fsync()
                            failed_seg = None
                        seg.file = None  # first: a close that fails has still released the descriptor
                        f.close()
        except BaseException as exc:
            if failure is None:
                failure = CommitLogSyncFailed(str(self.directory), f"commit log sync failed: {exc!r}")
                if isinstance(exc, OSError):  # a rolled segment's last fsync or close: named too
                    raise failure from exc
            raise
        finally:
            upto = target
            if failure is not None and failed_seg is not None:
                upto = self._fence_failed(failed_seg, target)
            with self._cond:
                self._syncing = False
                if failure is None and not (self.sticky_failure and self._failure is not None):
                    self._synced = max(self._synced, target)
                else:
                    # Never advance the synced position past a failed fsync (fsyncgate), and under
                    # stop/die never forget it: a later fsync that succeeds proves nothing about
                    # the pages the failed one dropped (a sync after it used to clear the failure,
                    # and the one after that acknowledged the writes the failed fsync covered).
                    if failure is not None:
                        log.error("%s; %s", failure, "no write it covered is acknowledged")
                        self._failed_ranges.append((self._synced, upto))
                        self._failure = failure
                self._last_sync = self._clock.monotonic()
                self._cond.notify_all()
        return target

    def failure(self) -> StorageFailure | None:
        """The last fsync failure, if any (sticky under stop/die)."""
        with self._cond:
            return self._failure

    def wait_durable(self, position: int) -> None:
        """Block until ``position`` is fsynced, as the sync mode requires (periodic: return at once)."""
        if self.sync_mode == "periodic":
            return
        while True:
            lead = False
            with self._cond:
                # A failed fsync's range first: a later fsync that succeeded proves nothing about it.
                if self._failure is not None and any(lo < position <= hi for lo, hi in self._failed_ranges):
                    raise self._failure
                if self._synced >= position:
                    return
                if self._failure is not None and self.sticky_failure:
                    raise self._failure
                if self._syncing:
                    self._cond.wait()
                else:
                    self._syncing = lead = True
                    if self.sync_mode == "group":
                        # Hold leadership while the window fills: later writers join this fsync.
                        delay = self._last_sync + self.group_window_s - self._clock.monotonic()
                        if delay > 0:
                            self._cond.wait(delay)
            if lead:
                self._lead_sync()

    def synced_position(self) -> int:
        """Every record at or before this position has been fsynced."""
        with self._cond:
            return self._synced

    # -- segment lifecycle ----------------------------------------------------------------------

    def mark_flushed(self, table_id: int, position: int) -> None:
        """Record that every record of ``table_id`` at or before ``position`` is in an SSTable."""
        with self._lock:
            if position > self._flushed.get(table_id, -1):
                self._flushed[table_id] = position

    def discard_clean(self, live_tables: set[int]) -> list[Path]:
        """Delete segments whose every table has been flushed (or dropped); returns deleted paths."""
        deleted = []
        with self._lock:
            keep: list[_Segment] = []
            for seg in self._segments:
                # A fence record stays while a segment it explains does (a restart needs it).
                clean = all(
                    t not in live_tables or pos <= self._flushed.get(t, -1) for t, pos in seg.dirty.items()
                ) and not any(k.id in seg.fences for k in keep)
                if seg is not self._active and seg.file is None and clean:
                    try:
                        seg.path.unlink(missing_ok=True)
                    except OSError as exc:
                        # Kept, and tried again at the next discard: replaying a clean segment
                        # skips what the SSTables already hold.
                        log.error("cannot delete clean commit log segment %s: %s", seg.path, exc)
                        keep.append(seg)
                        continue
                    deleted.append(seg.path)
                else:
                    keep.append(seg)
            self._segments = keep
        return deleted

    def total_bytes(self) -> int:
        """Bytes held by all segments on disk."""
        with self._lock:
            return sum(s.size for s in self._segments)

    def oldest_dirty_tables(self, live_tables: set[int]) -> set[int]:
        """Tables that keep the oldest segment alive (flush them to free commit log space)."""
        with self._lock:
            for seg in self._segments:
                dirty = {t for t, pos in seg.dirty.items()
                         if t in live_tables and pos > self._flushed.get(t, -1)}
                if dirty:
                    return dirty
        return set()

    def segment_count(self) -> int:
        """How many segments exist."""
        with self._lock:
            return len(self._segments)

    def close(self) -> None:
        """fsync and close every segment."""
        if self._active is None:
            return
        try:
            self.sync()
        except StorageFailure as exc:
            log.error("commit log not synced at close: %s", exc)
        with self._lock:
            self._closed = True
            for seg in self._segments:
                if seg.file is not None:
                    f, seg.file = seg.file, None
                    try:
                        f.close()
                    except OSError as exc:  # what it held was synced above, or logged as not
                        log.error("commit log segment %s: close failed: %s", seg.path, exc)
            self._active = None

    def unsynced_bytes(self) -> int:
        """Bytes appended but held back from the OS until the next fsync (volatile files only)."""
        with self._lock:
            return sum(s.file.unsynced_bytes() for s in self._segments if s.file is not None)

