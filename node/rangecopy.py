"""Whole-file range transfer: SSTables inside a streamed range move as files (zero copy).

The Cassandra paper's bootstrap copy ("kernel-kernel copying techniques"; Cassandra 4.0's
zero-copy streaming, CASSANDRA-14556). The target of a transfer (:class:`node.streaming.Streamer`)
first asks the source for a manifest (``STREAM_FILES``): every live SSTable of the table whose
first and last keys lie in one segment of the requested ranges, and for every SSTable that only
partly overlaps the segments, one *slice* per overlapping segment (node/storage/slicing.py: the
segment's contiguous run of the data file plus small components built from the parent's index),
each with every component's size and CRC32. For the files it does not hold yet, the target asks
the source (``STREAM_FILE_PUSH``, over the authenticated internode channel, carrying a random
one-time token) to connect back and send the components back to back with ``os.sendfile`` — in
the runtime's offload door, polling the non-blocking socket, so the event loop never blocks. The
connection goes to the target's internode port through the same route as every other message to
it (a fault proxy's link, when one is set), opening with a magic no frame can start with, so a
partition that cuts the link cuts the copy too. The target receives into ``storage/incoming/``,
computing each component's CRC while writing, fsyncs, checks sizes and CRCs against the manifest
and the copy's own digest, and imports it atomically (:meth:`StorageEngine.import_sstable`,
which then needs no second read of the data file). A damaged copy is refused and sent again;
after ``FILE_ATTEMPTS`` the file is left to the partition stream. Imported files are journaled
per resumable operation so a transfer cut by a kill resumes after the last complete file.

Everything else of the range (memtables, small SSTables, files that could not be sent) goes
through the partition stream, which skips the generations imported whole (the parent of a slice
only in that slice's segment). Only real sockets can ``sendfile``: under the
simulated network this path is off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import trio

from node.runtime import fsync, offload
from node.storage.engine import INCOMING_DIR, StorageEngine
from node.storage.errors import CorruptSSTableError
from node.storage.sstable import COMPONENTS, DIGEST, TOC, component_path, fsync_dir
from node.storage.slicing import Slice, slice_sstable

log = logging.getLogger("node.rangecopy")

VERB_STREAM_FILES = "STREAM_FILES"
VERB_STREAM_FILE_PUSH = "STREAM_FILE_PUSH"

# The first bytes of a file connection on the internode port. Read as a frame length it is
# 1.38 GB, past MAX_FRAME_BYTES (16 MiB), so no internode connection can start with it.
STREAM_MAGIC = b"RLFS"
# Bytes per sendfile call / receive buffer: large enough that per-call overhead vanishes next to
# the copy, small enough that a stalled peer is noticed between calls.
CHUNK_BYTES = 8 << 20
RECV_BYTES = 4 << 20
# How long a file push may wait for the socket to make progress before it is abandoned.
STALL_TIMEOUT = 30.0
# Whole file sends (first plus re-sends of a damaged copy) before the partition stream takes it.
FILE_ATTEMPTS = 3
# A push request covers connecting plus sending one batch; generous for a loaded disk.
PUSH_TIMEOUT = 600.0
# How long after the source says it sent a batch its connection may still be unseen here. The
# connection's first bytes arrive long before the source finishes, so only a cut link (whose
# bytes are dropped) or a node too loaded to accept runs into it; the batch is then sent again.
ACCEPT_GRACE = 10.0
# Bytes of the one-time token that opens a file connection (delivered over the authenticated
# internode channel, so only the source that was asked can send into the target's file).
TOKEN_BYTES = 16
# SSTables per file connection: one round trip for many small files, while a cut connection
# loses at most one batch (every imported file is journaled at once).
BATCH_FILES = 64
BATCH_BYTES = 256 << 20
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# The exit status of the exit_after_file_import fault switch.
EXIT_AFTER_IMPORT = 70
# Journal entries kept (per node): far more than one transfer's files.
JOURNAL_ENTRIES = 20_000
# Slices built for a manifest, kept until pushed (a push rebuilds one that was evicted).
SLICE_CACHE = 512


class FileRefused(Exception):
    """A whole-file copy failed verification against its digest (it is never imported)."""


@dataclass
class FileStats:
    """Counters of whole-file streaming on one node."""

    files_sent: int = 0
    file_bytes_sent: int = 0
    files_imported: int = 0
    file_bytes_received: int = 0
    files_refused: int = 0
    files_resumed: int = 0
    files_fallback: int = 0
    slices_sent: int = 0
    slices_imported: int = 0
    batches_failed: int = 0


# Component names in send order; the TOC last so a partial copy never looks complete.
SEND_ORDER = (*COMPONENTS, DIGEST, TOC)

# One part of a send: (file descriptor, offset, length) sent with sendfile, or bytes.
Part = Union[tuple[int, int, int], bytes]


def manifest_entry(reader: Any) -> dict[str, Any]:
    """What the target needs to receive and verify one whole SSTable: components, sizes, CRCs."""
    comps = []
    for comp in SEND_ORDER:
        path = component_path(reader.directory, reader.generation, comp)
        size = path.stat().st_size
        crc = reader.digests.get(comp, (None, None))[0]
        comps.append([comp, size, crc])
    return {"gen": reader.generation, "slice": None, "components": comps, "data_crc": reader.digests["Data.db"][0],
            "bytes": sum(c[1] for c in comps), "partitions": int(reader.stats.get("partitions", 0))}


def slice_entry(sl: Slice, wire: list[Any], seg: int) -> dict[str, Any]:
    """The manifest entry of one slice (``wire``: its segment as token strings, number ``seg``)."""
    comps = [[c, size, crc] for c, size, crc in sl.sizes()]
    return {"gen": sl.parent, "slice": wire, "seg": seg, "components": comps, "data_crc": sl.data_crc,
            "bytes": sum(c[1] for c in comps), "partitions": sl.partitions}


def _wait(fd: int, events: int) -> None:
    poller = select.poll()
    poller.register(fd, events)
    if not poller.poll(STALL_TIMEOUT * 1000):
        raise TimeoutError(f"file stream socket made no progress for {STALL_TIMEOUT:g} s")


def send_items(sock_fd: int, header: bytes, items: Sequence[tuple[int, Sequence[Part]]], damage: set[int]) -> int:
    """Send ``header``, then every item's parts in order (a worker thread); returns bytes sent.

    Runs on the non-blocking socket, waiting for it with poll. An item whose number is in
    ``damage`` (the ``damage_file_stream`` fault switch) has one byte flipped in its first chunk.
    """
    _send_bytes(sock_fd, header)
    total = 0
    for number, parts in items:
        spoil = number in damage
        for part in parts:
            if isinstance(part, bytes):
                data = part
                if spoil and data:
                    data = _spoiled(data)
                    spoil = False
                _send_bytes(sock_fd, data)
                total += len(part)
                continue
            fd, off, length = part
            end = off + length
            while off < end:
                n = min(CHUNK_BYTES, end - off)
                if spoil:
                    _send_bytes(sock_fd, _spoiled(os.pread(fd, n, off)))
                    spoil = False
                    off += n
                    continue
                try:
                    sent = os.sendfile(sock_fd, fd, off, n)
                except BlockingIOError:
                    _wait(sock_fd, select.POLLOUT)
                    continue
                if sent == 0:
                    raise ConnectionError("file stream: the source file ended early or the target closed")
                off += sent
            total += length
    return total


def _spoiled(data: bytes) -> bytes:
    chunk = bytearray(data)
    chunk[len(chunk) // 2] ^= 0xFF
    return bytes(chunk)


def _send_bytes(sock_fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(sock_fd, view)
        except BlockingIOError:
            _wait(sock_fd, select.POLLOUT)
            continue
        view = view[n:]


def _read_exact(sock_fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        try:
            data = os.read(sock_fd, n - len(out))
        except BlockingIOError:
            _wait(sock_fd, select.POLLIN)
            continue
        if not data:
            raise ConnectionError("file stream ended inside its header")
        out += data
    return bytes(out)


def receive_batch(sock_fd: int, dest: Path, entries: dict[int, dict[str, Any]],
                  on_item: Callable[[tuple[int, int, int]], None] | None = None) -> list[tuple[int, int, int]]:
    """Receive the items the source announces (a worker thread); ``(number, bytes, data CRC)`` each.

    Item ``n`` is written into ``dest`` as generation ``n``, not yet fsynced (:func:`sync_copy`).
    ``on_item`` gets each item as soon as it is received, so its fsync, check and import overlap
    the receiving of the next one.
    """
    (count,) = _U32.unpack(_read_exact(sock_fd, _U32.size))
    numbers = [_U64.unpack(_read_exact(sock_fd, _U64.size))[0] for _ in range(count)]
    unknown = [n for n in numbers if n not in entries]
    if unknown:
        raise ConnectionError(f"file stream announced items that were not asked for: {unknown}")
    out = []
    for n in numbers:
        got, crcs = receive_files(sock_fd, dest, n, entries[n]["components"])
        out.append((n, got, crcs["Data.db"]))
        if on_item is not None:
            on_item(out[-1])
    return out


def sync_copy(dest: Path, gen: int, components: Sequence[Sequence[Any]]) -> None:
    """fsync every received component of generation ``gen`` in ``dest``, then ``dest`` itself."""
    for comp, _size, _crc in components:
        fd = os.open(component_path(dest, gen, str(comp)), os.O_RDONLY)
        try:
            fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(dest)


def receive_files(sock_fd: int, dest: Path, gen: int, components: Sequence[Sequence[Any]]) -> tuple[int, dict[str, int]]:
    """Receive one SSTable's components (sizes known) into ``dest`` as generation ``gen``, without
    fsync: the importing side fsyncs them (:func:`sync_copy`) while the next file arrives.
    Returns the bytes and each component's CRC32, computed while writing (no second read)."""
    buf = bytearray(min(RECV_BYTES, max([int(c[1]) for c in components] + [1])))
    view = memoryview(buf)
    total = 0
    crcs: dict[str, int] = {}
    for comp, size, _crc in components:
        path = component_path(dest, gen, str(comp))
        crc = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            left = int(size)
            while left:
                try:
                    n = os.readv(sock_fd, [view[:min(len(buf), left)]])
                except BlockingIOError:
                    _wait(sock_fd, select.POLLIN)
                    continue
                if n == 0:
                    raise ConnectionError(f"file stream ended {left} bytes short of {comp}")
                chunk = view[:n]
                crc = zlib.crc32(chunk, crc)
                written = 0
                while written < n:
                    written += os.write(fd, chunk[written:])
                left -= n
                total += n
        finally:
            os.close(fd)
        crcs[str(comp)] = crc
    return total, crcs


def check_copy(dest: Path, gen: int, entry: dict[str, Any], data_crc: int) -> None:
    """Refuse a received copy whose sizes or CRCs differ from the manifest, or whose digest names
    another data file than the one received (``data_crc``: computed while receiving)."""
    for comp, size, _crc in entry["components"]:
        path = component_path(dest, gen, str(comp))
        if path.stat().st_size != int(size):
            raise FileRefused(f"{path.name}: {path.stat().st_size} bytes, expected {size}")
    if data_crc != int(entry["data_crc"]):
        raise FileRefused(f"Data.db: CRC {data_crc} received, the manifest says {entry['data_crc']}")
    digest = component_path(dest, gen, DIGEST).read_text(errors="replace").splitlines()
    data = [line.split() for line in digest if line.startswith("Data.db ")]
    if not data or len(data[0]) != 3 or data[0][1] != str(entry["data_crc"]):
        raise FileRefused(f"{DIGEST}: does not name the data file of the manifest")


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _batches(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries in groups of at most BATCH_FILES files and about BATCH_BYTES bytes."""
    out: list[list[dict[str, Any]]] = []
    size = 0
    for e in entries:
        if not out or len(out[-1]) >= BATCH_FILES or size >= BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(e)
        size += int(e["bytes"])
    return out


class Journal:
    """Which SSTables of which source this node already imported whole (resumes a cut transfer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = json.loads(path.read_text())
            self.entries: list[str] = [str(e) for e in raw] if isinstance(raw, list) else []
        except (OSError, ValueError):
            self.entries = []
        self._set = set(self.entries)
        # Transfers running at once journal from several worker threads.
        self._lock = threading.Lock()

    @staticmethod
    def key(resume: str, source: str, ks: str, table: str, entry: dict[str, Any]) -> str:
        """An SSTable's (or slice's) identity within one resumable operation: source, table,
        generation, segment and data CRC (a reused number differs)."""
        sl = entry.get("slice")
        part = "" if not sl else f"[{sl[0]},{sl[1]}]"
        return f"{resume}/{source}/{ks}.{table}/{entry['gen']}{part}/{entry['data_crc']}"

    def __contains__(self, key: str) -> bool:
        return key in self._set

    def add(self, key: str) -> None:
        """Record one import durably (a worker thread)."""
        with self._lock:
            if key in self._set:
                return
            self.entries.append(key)
            del self.entries[:-JOURNAL_ENTRIES]
            self._set = set(self.entries)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w") as f:
                json.dump(self.entries, f)
                f.flush()
                fsync(f.fileno())
            os.replace(tmp, self.path)

    def clear(self) -> None:
        """Forget every entry (the resumable operation is complete; a worker thread)."""
        with self._lock:
            self.entries, self._set = [], set()
            self.path.unlink(missing_ok=True)


@dataclass
class _Expected:
    """A file connection the target waits for: what it carries and where it goes."""

    entries: dict[int, dict[str, Any]]
    incoming: Path
    # Each item once received (closed when the connection ends): the importer takes them in turn.
    arrived: trio.MemorySendChannel[tuple[int, int, int]]
    done: trio.Event = field(default_factory=trio.Event)
    accepted: trio.Event = field(default_factory=trio.Event)
    got: list[tuple[int, int, int]] | None = None
    error: BaseException | None = None


class RangeCopy:
    """Both sides of whole-file transfers for one node."""

    def __init__(self, node_id: str, messaging: Any, engine: StorageEngine, runtime: Any, faults: Any,
                 min_bytes: int = 0) -> None:
        self.node_id = node_id
        # Smaller SSTables go by the partition stream: per file, the fsyncs of seven components
        # and an import cost more than paging a few kilobytes of partitions.
        self.min_bytes = min_bytes
        self.messaging = messaging
        self.engine = engine
        self.runtime = runtime
        self.faults = faults
        self.stats = FileStats()
        # Real sockets only: a simulated network has no descriptors to sendfile into.
        from node.runtime import Network
        self.enabled = isinstance(getattr(runtime, "network", None), Network)
        self.journal = Journal(engine.data_dir / "streamed_files.json")
        self._damaged: set[tuple[str, str, int, str]] = set()
        self._slices: OrderedDict[tuple[str, str, int, str, str], Slice] = OrderedDict()
        self._expected: dict[bytes, _Expected] = {}
        messaging.register(VERB_STREAM_FILES, self._handle_manifest)
        messaging.register(VERB_STREAM_FILE_PUSH, self._handle_push)
        register_stream = getattr(messaging, "register_stream", None)
        if self.enabled and register_stream is not None:
            register_stream(STREAM_MAGIC, self._accept)

    # ---- source side

    async def _handle_manifest(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self.serving_transfer():
            return await self._manifest(payload)

    async def _manifest(self, payload: dict[str, Any]) -> dict[str, Any]:
        ks, table = str(payload["ks"]), str(payload["t"])
        wire = [list(seg) for seg in payload["segments"]]
        segments = [(None if lo is None else self._tok(lo), None if hi is None else self._tok(hi)) for lo, hi in wire]
        if not self.token_ordered:
            return {"files": []}  # key-byte order: token segments say nothing about file contents
        min_bytes = int(payload.get("min_bytes") or 0)
        whole = [r for r in self.engine.whole_sstables(ks, table, segments) if r.data_bytes >= min_bytes]
        partial = self.engine.partial_sstables(ks, table, segments)
        fp = self.engine.table_options(ks, table).bloom_fp_chance

        def build() -> tuple[list[dict[str, Any]], list[tuple[Slice, list[Any]]]]:
            out = [manifest_entry(r) for r in whole]
            built = []
            for r in partial:
                for i, ((lo, hi), w) in enumerate(zip(segments, wire)):
                    # A slice is worth a file from the same size up as a whole SSTable (repair's
                    # slices of a few partitions stay pages).
                    sl = slice_sstable(r, lo, hi, fp)
                    if sl is not None and sl.length >= max(1, min_bytes):
                        built.append((sl, w))
                        out.append(slice_entry(sl, w, i))
            return out, built

        entries, built = await offload(build)
        for sl, w in built:  # the cache is touched on the Trio side only
            self._remember(ks, table, sl, w)
        return {"files": entries}

    def _remember(self, ks: str, table: str, sl: Slice, wire: list[Any]) -> None:
        self._slices[(ks, table, sl.parent, str(wire[0]), str(wire[1]))] = sl
        while len(self._slices) > SLICE_CACHE:
            self._slices.popitem(last=False)

    def _tok(self, raw: Any) -> Any:
        return self.partitioner.from_string(raw)

    # Set by the Streamer: token strings on the wire, whether SSTables are in token order, and
    # the counter of requests served for transfers (compactions hold re-splits meanwhile).
    partitioner: Any = None
    token_ordered = False
    serving_transfer: Any = staticmethod(contextlib.nullcontext)

    def _open_item(self, ks: str, table: str, gen: int, wire: list[Any] | None,
                   sl: Slice | None) -> tuple[list[Part], list[int]] | None:
        """The parts of one item to send and the descriptors to close, or None when its SSTable
        is no longer live (compacted away meanwhile: its data is in a newer file). A worker thread."""
        paths = self.engine.sstable_files(ks, table, gen)
        if paths is None:
            return None
        fds: list[int] = []
        try:
            if wire is None:
                # Everything open first: a compaction may unlink the files meanwhile.
                for p in paths:
                    fds.append(os.open(p, os.O_RDONLY))
                return [(fd, 0, os.fstat(fd).st_size) for fd in fds], fds
            fds.append(os.open(paths[0], os.O_RDONLY))  # Data.db: the slice is a run of it
            if sl is None:
                reader = self.engine.live_sstable(ks, table, gen)
                if reader is None:
                    raise FileNotFoundError(paths[0])
                lo, hi = (None if w is None else self._tok(w) for w in wire)
                sl = slice_sstable(reader, lo, hi, self.engine.table_options(ks, table).bloom_fp_chance)
                if sl is None:
                    raise FileNotFoundError(paths[0])
            parts: list[Part] = [(fds[0], sl.offset, sl.length)]
            parts += [sl.blobs[c] for c in (*COMPONENTS[1:], DIGEST, TOC)]
            return parts, fds
        except FileNotFoundError:
            for fd in fds:
                os.close(fd)
            return None

    async def _handle_push(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self.serving_transfer():
            return await self._push(sender, payload)

    async def _push(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        ks, table = str(payload["ks"]), str(payload["t"])
        token = bytes.fromhex(str(payload["token"]))
        opened: list[tuple[int, list[Part]]] = []
        fds: list[int] = []
        damage: set[int] = set()
        spoil = self.faults is not None and getattr(self.faults, "damage_file_stream", False)
        try:
            for number, gen, wire in payload["items"]:
                cached = None if not wire else self._slices.pop((ks, table, int(gen), str(wire[0]), str(wire[1])), None)
                item = await offload(self._open_item, ks, table, int(gen), wire, cached)
                if item is None:
                    continue
                opened.append((int(number), item[0]))
                fds += item[1]
                ident = (ks, table, int(gen), json.dumps(wire))
                if spoil and ident not in self._damaged:
                    self._damaged.add(ident)
                    damage.add(int(number))
            # The target's internode address as every message to it goes: its route (a fault
            # proxy's link) first, so a partition of that link cuts this connection too.
            addr = self.messaging.address_of(sender)
            if addr is None:
                raise ConnectionError(f"no address known for {sender}")
            header = STREAM_MAGIC + token + _U32.pack(len(opened)) + b"".join(_U64.pack(n) for n, _ in opened)
            stream = await self.runtime.network.open_tcp_stream(addr[0], int(addr[1]))
            try:
                sent = await offload(send_items, stream.socket.fileno(), header, opened, damage)
            finally:
                await stream.aclose()
        finally:
            for fd in fds:
                os.close(fd)
        slices = sum(1 for _, gen, wire in payload["items"] if wire)
        self.stats.files_sent += len(opened)
        self.stats.slices_sent += slices
        self.stats.file_bytes_sent += sent
        return {"bytes": sent, "sent": [n for n, _ in opened]}

    # ---- target side

    async def _accept(self, stream: Any) -> None:
        """A file connection on the internode port (after the magic): check its token, receive."""
        got = b""
        with trio.move_on_after(10.0):
            while len(got) < TOKEN_BYTES:
                data = await stream.receive_some(TOKEN_BYTES - len(got))
                if not data:
                    break
                got += data
        exp = self._expected.pop(got, None) if len(got) == TOKEN_BYTES else None
        if exp is None:
            log.warning("file stream connection without a token this node waits for; closed")
            return
        exp.accepted.set()
        token = trio.lowlevel.current_trio_token()

        def on_item(item: tuple[int, int, int]) -> None:
            # A closed channel (the transfer gave up on this batch) ends the receive.
            trio.from_thread.run_sync(exp.arrived.send_nowait, item, trio_token=token)

        try:
            exp.got = await offload(receive_batch, stream.socket.fileno(), exp.incoming, exp.entries, on_item)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting transfer, which raises it
            exp.error = exc
        finally:
            exp.arrived.close()
            exp.done.set()

    async def fetch_files(self, source: str, ks: str, table: str, segments: Sequence[tuple[Any, Any]],
                          resume: str | None = None) -> dict[str, Any]:
        """Import every SSTable (and slice) of ``source`` inside ``segments``; returns the skip set.

        ``resume`` names a resumable operation (a bootstrap): files it already imported are
        skipped. Without one nothing is skipped, since data imported by an earlier operation may
        have been dropped since (a cleanup after a move).
        """
        part = self.partitioner
        wire = [[None if lo is None else part.to_string(lo), None if hi is None else part.to_string(hi)] for lo, hi in segments]
        reply = await self.messaging.request(source, VERB_STREAM_FILES, {"ks": ks, "t": table, "segments": wire,
                                                                         "min_bytes": self.min_bytes}, 60.0)
        entries = list(reply.get("files", []))
        # What the pages leave out: a whole SSTable everywhere, a slice's parent in its segment.
        skip: set[int] = set()
        skip_in: dict[int, set[int]] = {}
        nbytes = 0
        nfiles = 0
        pending: list[dict[str, Any]] = []

        def arrived(entry: dict[str, Any]) -> None:
            if entry.get("slice"):
                skip_in.setdefault(int(entry["seg"]), set()).add(int(entry["gen"]))
            else:
                skip.add(int(entry["gen"]))

        for entry in entries:
            if resume is not None and Journal.key(resume, source, ks, table, entry) in self.journal:
                self.stats.files_resumed += 1
                arrived(entry)
            else:
                pending.append(entry)
        for _attempt in range(FILE_ATTEMPTS):
            if not pending:
                break
            retry: list[dict[str, Any]] = []
            for batch in _batches(pending):
                done, refused, error = await self._fetch_batch(source, ks, table, batch, resume)
                for entry, got in done:
                    arrived(entry)
                    nbytes += got
                    nfiles += 1
                retry.extend(refused)
                if error is not None:
                    if not isinstance(error, (OSError, trio.TooSlowError)):
                        raise error
                    self.stats.batches_failed += 1
                    log.warning("whole-file copy of %d SSTable(s) of %s.%s from %s failed after %d imported: %s",
                                len(batch), ks, table, source, len(done), error)
                    settled = {id(e) for e, _ in done} | {id(e) for e in refused}
                    retry.extend(e for e in batch if id(e) not in settled)
            pending = retry
        self.stats.files_fallback += len(pending)
        return {"skip": sorted(skip), "skip_in": {i: sorted(g) for i, g in skip_in.items()}, "bytes": nbytes, "files": nfiles}

    async def _fetch_batch(self, source: str, ks: str, table: str, batch: list[dict[str, Any]],
                           resume: str | None) -> tuple[list[tuple[dict[str, Any], int]], list[dict[str, Any]],
                                                        BaseException | None]:
        """One connection carrying a batch of SSTables: receive, verify and import each.

        Each file is fsynced, checked and imported as soon as it has arrived, while the next one
        is received (the disk's flush overlaps the copy). Returns the imported entries (with
        bytes), the refused ones (damaged in transit) and the error that cut the batch short, if
        any (the entries in neither list are then to be sent again).
        """
        by_number = dict(enumerate(batch))
        token = self.runtime.rng.getrandbits(8 * TOKEN_BYTES).to_bytes(TOKEN_BYTES, "big")
        # Named by the token too: transfers from one source may run at once and share generations
        # (the slices of one parent in different segments).
        incoming = self.engine.data_dir / INCOMING_DIR / f"{source}-{ks}-{table}-{token.hex()[:16]}"
        await offload(_fresh_dir, incoming)
        arrived, items_in = trio.open_memory_channel[tuple[int, int, int]](float("inf"))
        exp = _Expected(by_number, incoming, arrived)
        self._expected[token] = exp
        result: dict[str, Any] = {}
        done: list[tuple[dict[str, Any], int]] = []
        refused: list[dict[str, Any]] = []
        try:
            items = [[n, int(e["gen"]), e.get("slice")] for n, e in by_number.items()]
            payload = {"ks": ks, "t": table, "items": items, "token": token.hex()}

            async def importer() -> None:
                try:
                    await import_each()
                except Exception as exc:  # noqa: BLE001 - returned below; closing the channel ends the receive
                    result["import_error"] = exc

            async def import_each() -> None:
                async with items_in:
                    async for number, got, data_crc in items_in:
                        entry = by_number[number]
                        gen = int(entry["gen"])
                        try:
                            await offload(sync_copy, incoming, number, entry["components"])
                            await offload(check_copy, incoming, number, entry, data_crc)
                            await offload(self.engine.import_sstable, ks, table, incoming, number, data_crc)
                        except (FileRefused, CorruptSSTableError) as exc:
                            self.stats.files_refused += 1
                            log.warning("whole-file copy of %s.%s generation %d%s from %s refused (%s); it is sent again",
                                        ks, table, gen, " (slice)" if entry.get("slice") else "", source, exc)
                            refused.append(entry)
                            continue
                        if resume is not None:
                            await offload(self.journal.add, Journal.key(resume, source, ks, table, entry))
                        if self.faults is not None and getattr(self.faults, "exit_after_file_import", False):
                            log.warning("fault switch exit_after_file_import: exiting after importing %s.%s generation %d",
                                        ks, table, gen)
                            os._exit(EXIT_AFTER_IMPORT)
                        self.stats.files_imported += 1
                        self.stats.slices_imported += 1 if entry.get("slice") else 0
                        self.stats.file_bytes_received += got
                        done.append((entry, got))

            async with trio.open_nursery() as outer:
                outer.start_soon(importer)
                async with trio.open_nursery() as nursery:

                    async def push() -> None:
                        try:
                            result["reply"] = dict(await self.messaging.request(source, VERB_STREAM_FILE_PUSH, payload, PUSH_TIMEOUT))
                        except Exception as exc:  # noqa: BLE001 - returned below, outside the nursery
                            result["error"] = exc
                            nursery.cancel_scope.cancel()
                            return
                        with trio.move_on_after(ACCEPT_GRACE):
                            await exp.accepted.wait()
                        if not exp.accepted.is_set():
                            result["error"] = ConnectionError(f"{source} sent the files but no file connection arrived "
                                                              f"within {ACCEPT_GRACE:g} s (a cut link drops its bytes)")
                            nursery.cancel_scope.cancel()

                    async def receive() -> None:
                        with trio.move_on_after(PUSH_TIMEOUT) as scope:
                            await exp.done.wait()
                        if scope.cancelled_caught:
                            result["error"] = trio.TooSlowError(f"no file stream from {source} within {PUSH_TIMEOUT:g} s")
                            nursery.cancel_scope.cancel()
                        elif exp.error is not None:
                            result["error"] = exp.error
                            nursery.cancel_scope.cancel()

                    nursery.start_soon(push)
                    nursery.start_soon(receive)
                # Received (or given up): the importer finishes the files that arrived whole.
                arrived.close()
            return done, refused, result.get("import_error", result.get("error"))
        finally:
            self._expected.pop(token, None)
            await offload(shutil.rmtree, incoming, True)
