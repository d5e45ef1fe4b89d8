"""Whole-file range transfer: SSTables wholly inside a streamed range move as files (zero copy).

The Cassandra paper's bootstrap copy ("kernel-kernel copying techniques"; Cassandra 4.0's
zero-copy streaming, CASSANDRA-14556). The target of a transfer (:class:`node.streaming.Streamer`)
first asks the source for a manifest (``STREAM_FILES``): every live SSTable of the table whose
first and last keys lie in one segment of the requested ranges, with each component's size and
CRC32 from its digest. For each file it does not hold yet, the target opens a one-off listener
and asks the source (``STREAM_FILE_PUSH``, over the authenticated internode channel, carrying a
random one-time token) to connect to it and send the components back to back with
``os.sendfile`` — in the runtime's offload door, polling the non-blocking socket, so the event
loop never blocks. The target receives into ``storage/incoming/``, fsyncs, verifies the copy
against the SSTable's digest (every component's CRC and size, the data file whole) and imports it
atomically (:meth:`StorageEngine.import_sstable`). A damaged copy is refused and sent again; after
``FILE_ATTEMPTS`` the file is left to the partition stream. Imported files are journaled per
source so a transfer cut by a kill resumes after the last complete file.

Everything else of the range (memtables, SSTables that span a range boundary, files that could not
be sent) goes through the partition stream, which skips the generations imported whole.
Only real sockets can ``sendfile``: under the simulated network this path is off.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from node.runtime import fsync, offload
from node.storage.engine import INCOMING_DIR, StorageEngine
from node.storage.errors import CorruptSSTableError
from node.storage.sstable import COMPONENTS, DIGEST, TOC, component_path, fsync_dir

log = logging.getLogger("node.rangecopy")

VERB_STREAM_FILES = "STREAM_FILES"
VERB_STREAM_FILE_PUSH = "STREAM_FILE_PUSH"

# Bytes per sendfile call / receive buffer: large enough that per-call overhead vanishes next to
# the copy, small enough that a stalled peer is noticed between calls.
CHUNK_BYTES = 4 << 20
# How long a file push may wait for the socket to make progress before it is abandoned.
STALL_TIMEOUT = 30.0
# Whole file sends (first plus re-sends of a damaged copy) before the partition stream takes it.
FILE_ATTEMPTS = 3
# A push request covers connecting plus sending one SSTable; generous for a loaded disk.
PUSH_TIMEOUT = 600.0
# Bytes of the one-time token that opens a file connection (delivered over the authenticated
# internode channel, so only the source that was asked can send into the target's file).
TOKEN_BYTES = 16
# SSTables per file connection: one round trip and one listener for many small files, while a
# cut connection loses at most one batch (every imported file is journaled at once).
BATCH_FILES = 64
BATCH_BYTES = 256 << 20
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# The exit status of the exit_after_file_import fault switch.
EXIT_AFTER_IMPORT = 70
# Journal entries kept (per node): far more than one transfer's files.
JOURNAL_ENTRIES = 20_000


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


# Component names in send order; the TOC last so a partial copy never looks complete.
SEND_ORDER = (*COMPONENTS, DIGEST, TOC)


def manifest_entry(reader: Any) -> dict[str, Any]:
    """What the target needs to receive and verify one SSTable: components, sizes, CRCs."""
    comps = []
    for comp in SEND_ORDER:
        path = component_path(reader.directory, reader.generation, comp)
        size = path.stat().st_size
        crc = reader.digests.get(comp, (None, None))[0]
        comps.append([comp, size, crc])
    return {"gen": reader.generation, "components": comps, "data_crc": reader.digests["Data.db"][0],
            "bytes": sum(c[1] for c in comps), "partitions": int(reader.stats.get("partitions", 0))}


def _wait(fd: int, events: int) -> None:
    poller = select.poll()
    poller.register(fd, events)
    if not poller.poll(STALL_TIMEOUT * 1000):
        raise TimeoutError(f"file stream socket made no progress for {STALL_TIMEOUT:g} s")


def send_files(sock_fd: int, token: bytes, batch: Sequence[tuple[int, Sequence[Path]]], damage: set[int]) -> int:
    """Send ``token``, the generations coming, then every file whole (a worker thread); bytes sent.

    Runs on the non-blocking socket, waiting for it with poll. A generation in ``damage`` (the
    ``damage_file_stream`` fault switch) has one byte flipped in its first chunk.
    """
    # Everything open first: a compaction may unlink the files meanwhile.
    files = [(gen, [open(p, "rb") for p in paths]) for gen, paths in batch]
    try:
        header = token + _U32.pack(len(files)) + b"".join(_U64.pack(gen) for gen, _ in files)
        _send_bytes(sock_fd, header)
        total = 0
        for gen, handles in files:
            spoil = gen in damage
            for f in handles:
                size = os.fstat(f.fileno()).st_size
                off = 0
                while off < size:
                    n = min(CHUNK_BYTES, size - off)
                    if spoil:
                        chunk = bytearray(os.pread(f.fileno(), n, off))
                        chunk[len(chunk) // 2] ^= 0xFF
                        _send_bytes(sock_fd, bytes(chunk))
                        spoil = False
                        off += n
                        continue
                    try:
                        sent = os.sendfile(sock_fd, f.fileno(), off, n)
                    except BlockingIOError:
                        _wait(sock_fd, select.POLLOUT)
                        continue
                    if sent == 0:
                        raise ConnectionError("file stream socket closed by the target")
                    off += sent
                total += size
        return total
    finally:
        for _, handles in files:
            for f in handles:
                f.close()


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


def receive_batch(sock_fd: int, dest: Path, by_gen: dict[int, dict[str, Any]]) -> list[tuple[int, int]]:
    """Receive the generations the source announces (a worker thread); ``(gen, bytes)`` each."""
    (count,) = _U32.unpack(_read_exact(sock_fd, _U32.size))
    gens = [_U64.unpack(_read_exact(sock_fd, _U64.size))[0] for _ in range(count)]
    unknown = [g for g in gens if g not in by_gen]
    if unknown:
        raise ConnectionError(f"file stream announced generations that were not asked for: {unknown}")
    return [(gen, receive_files(sock_fd, dest, gen, by_gen[gen]["components"])) for gen in gens]


def receive_files(sock_fd: int, dest: Path, gen: int, components: Sequence[Sequence[Any]]) -> int:
    """Receive one SSTable's components (sizes known) into ``dest`` as generation ``gen``; fsync them."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    for comp, size, _crc in components:
        path = component_path(dest, gen, str(comp))
        with open(path, "wb") as out:
            left = int(size)
            while left:
                try:
                    n = os.readv(sock_fd, [view[:min(len(buf), left)]])
                except BlockingIOError:
                    _wait(sock_fd, select.POLLIN)
                    continue
                if n == 0:
                    raise ConnectionError(f"file stream ended {left} bytes short of {comp}")
                out.write(view[:n])
                left -= n
                total += n
            out.flush()
            fsync(out.fileno())
    fsync_dir(dest)
    return total


def check_copy(dest: Path, gen: int, entry: dict[str, Any]) -> None:
    """Refuse a received copy whose components differ in size from the manifest or whose digest
    names another data file (the CRCs themselves are checked by the import, against the digest)."""
    for comp, size, _crc in entry["components"]:
        path = component_path(dest, gen, str(comp))
        if path.stat().st_size != int(size):
            raise FileRefused(f"{path.name}: {path.stat().st_size} bytes, expected {size}")
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

    @staticmethod
    def key(resume: str, source: str, ks: str, table: str, entry: dict[str, Any]) -> str:
        """An SSTable's identity within one resumable operation: source, table, generation and
        data CRC (a reused number differs)."""
        return f"{resume}/{source}/{ks}.{table}/{entry['gen']}/{entry['data_crc']}"

    def __contains__(self, key: str) -> bool:
        return key in self._set

    def add(self, key: str) -> None:
        """Record one import durably (a worker thread)."""
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
        self.entries, self._set = [], set()
        self.path.unlink(missing_ok=True)


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
        self._damaged: set[tuple[str, str, int]] = set()
        messaging.register(VERB_STREAM_FILES, self._handle_manifest)
        messaging.register(VERB_STREAM_FILE_PUSH, self._handle_push)

    # ---- source side

    async def _handle_manifest(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        ks, table = str(payload["ks"]), str(payload["t"])
        segments = [(None if lo is None else self._tok(lo), None if hi is None else self._tok(hi))
                    for lo, hi in payload["segments"]]
        if not self.token_ordered:
            return {"files": []}  # key-byte order: token segments say nothing about file contents
        min_bytes = int(payload.get("min_bytes") or 0)
        readers = [r for r in self.engine.whole_sstables(ks, table, segments) if r.data_bytes >= min_bytes]
        return {"files": await offload(lambda: [manifest_entry(r) for r in readers])}

    def _tok(self, raw: Any) -> Any:
        return self.partitioner.from_string(raw)

    # Set by the Streamer: token strings on the wire, and whether SSTables are in token order.
    partitioner: Any = None
    token_ordered = False

    async def _handle_push(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        ks, table = str(payload["ks"]), str(payload["t"])
        token = bytes.fromhex(str(payload["token"]))
        batch: list[tuple[int, list[Path]]] = []
        for gen in payload["gens"]:
            paths = self.engine.sstable_files(ks, table, int(gen))
            if paths is not None:  # compacted away meanwhile: its data is in a newer file
                batch.append((int(gen), paths))
        host = str(payload["host"])
        if host in ("", "0.0.0.0", "::"):
            # The target listens on every address: reach it where its messaging is reached.
            host = (self.messaging.address_of(sender) or (host,))[0]
        damage: set[int] = set()
        if self.faults is not None and getattr(self.faults, "damage_file_stream", False):
            for gen, _ in batch:
                if (ks, table, gen) not in self._damaged:
                    self._damaged.add((ks, table, gen))
                    damage.add(gen)
        stream = await self.runtime.network.open_tcp_stream(host, int(payload["port"]))
        try:
            sent = await offload(send_files, stream.socket.fileno(), token, batch, damage)
        finally:
            await stream.aclose()
        self.stats.files_sent += len(batch)
        self.stats.file_bytes_sent += sent
        return {"bytes": sent, "sent": [g for g, _ in batch]}

    # ---- target side

    async def fetch_files(self, source: str, ks: str, table: str, segments: Sequence[tuple[Any, Any]],
                          resume: str | None = None) -> dict[str, Any]:
        """Import every SSTable of ``source`` wholly inside ``segments``; returns the skip set.

        ``resume`` names a resumable operation (a bootstrap): files it already imported are
        skipped. Without one nothing is skipped, since data imported by an earlier operation may
        have been dropped since (a cleanup after a move).
        """
        part = self.partitioner
        wire = [[None if lo is None else part.to_string(lo), None if hi is None else part.to_string(hi)] for lo, hi in segments]
        reply = await self.messaging.request(source, VERB_STREAM_FILES, {"ks": ks, "t": table, "segments": wire,
                                                                         "min_bytes": self.min_bytes}, 60.0)
        skip: list[int] = []
        nbytes = 0
        pending: list[dict[str, Any]] = []
        for entry in reply.get("files", []):
            if resume is not None and Journal.key(resume, source, ks, table, entry) in self.journal:
                self.stats.files_resumed += 1
                skip.append(int(entry["gen"]))
            else:
                pending.append(entry)
        for attempt in range(FILE_ATTEMPTS):
            if not pending:
                break
            retry: list[dict[str, Any]] = []
            for batch in _batches(pending):
                try:
                    done, refused = await self._fetch_batch(source, ks, table, batch, resume)
                except (OSError, trio.TooSlowError) as exc:
                    log.warning("whole-file copy of %d SSTable(s) of %s.%s from %s failed: %s", len(batch), ks, table, source, exc)
                    retry.extend(batch)
                    continue
                for entry, got in done:
                    skip.append(int(entry["gen"]))
                    nbytes += got
                retry.extend(refused)
            pending = retry
        self.stats.files_fallback += len(pending)
        return {"skip": skip, "bytes": nbytes, "files": len(skip)}

    async def _fetch_batch(self, source: str, ks: str, table: str, batch: list[dict[str, Any]],
                           resume: str | None) -> tuple[list[tuple[dict[str, Any], int]], list[dict[str, Any]]]:
        """One connection carrying a batch of SSTables: receive, verify and import each.

        Returns the imported entries (with bytes) and the refused ones (damaged in transit).
        """
        by_gen = {int(e["gen"]): e for e in batch}
        incoming = self.engine.data_dir / INCOMING_DIR / f"{source}-{ks}-{table}-{min(by_gen)}"
        await offload(_fresh_dir, incoming)
        host = self.messaging.listen_host
        listeners = await self.runtime.network.open_tcp_listeners(0, host=host)
        token = self.runtime.rng.getrandbits(8 * TOKEN_BYTES).to_bytes(TOKEN_BYTES, "big")
        result: dict[str, Any] = {}
        try:
            port = listeners[0].socket.getsockname()[1]
            payload = {"ks": ks, "t": table, "gens": sorted(by_gen), "host": host, "port": port, "token": token.hex()}
            async with trio.open_nursery() as nursery:

                async def push() -> None:
                    try:
                        result["reply"] = dict(await self.messaging.request(source, VERB_STREAM_FILE_PUSH, payload, PUSH_TIMEOUT))
                    except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                        result["error"] = exc
                        nursery.cancel_scope.cancel()

                async def receive() -> None:
                    try:
                        with trio.fail_after(PUSH_TIMEOUT):
                            while "got" not in result:
                                stream = await listeners[0].accept()
                                try:
                                    got = await self._receive(stream, token, incoming, by_gen)
                                finally:
                                    await stream.aclose()
                                if got is not None:
                                    result["got"] = got
                    except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                        result["error"] = exc
                        nursery.cancel_scope.cancel()

                nursery.start_soon(push)
                nursery.start_soon(receive)
            if "error" in result:
                raise result["error"]
            done: list[tuple[dict[str, Any], int]] = []
            refused: list[dict[str, Any]] = []
            for gen, got in result["got"]:
                entry = by_gen[gen]
                try:
                    await offload(check_copy, incoming, gen, entry)
                    await offload(self.engine.import_sstable, ks, table, incoming, gen)
                except (FileRefused, CorruptSSTableError) as exc:
                    self.stats.files_refused += 1
                    log.warning("whole-file copy of %s.%s generation %d from %s refused (%s); it is sent again",
                                ks, table, gen, source, exc)
                    refused.append(entry)
                    continue
                if resume is not None:
                    await offload(self.journal.add, Journal.key(resume, source, ks, table, entry))
                if self.faults is not None and getattr(self.faults, "exit_after_file_import", False):
                    log.warning("fault switch exit_after_file_import: exiting after importing %s.%s generation %d",
                                ks, table, gen)
                    os._exit(EXIT_AFTER_IMPORT)
                self.stats.files_imported += 1
                self.stats.file_bytes_received += got
                done.append((entry, got))
            return done, refused
        finally:
            for lst in listeners:
                await lst.aclose()
            await offload(shutil.rmtree, incoming, True)

    async def _receive(self, stream: Any, token: bytes, incoming: Path, by_gen: dict[int, dict[str, Any]]
                       ) -> list[tuple[int, int]] | None:
        """Check a connection's token, then receive the files; None for a stranger's connection."""
        got = b""
        with trio.move_on_after(10.0):
            while len(got) < TOKEN_BYTES:
                data = await stream.receive_some(TOKEN_BYTES - len(got))
                if not data:
                    break
                got += data
        if got != token:
            log.warning("file stream connection without the right token; closed")
            return None
        return await offload(receive_batch, stream.socket.fileno(), incoming, by_gen)
