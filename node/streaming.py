"""Range streaming: copy the partitions of token ranges from one replica to another.

A transfer is pulled by its target: the target asks the source for pages of partitions
(``STREAM_PAGE``), each page ending at a cursor (segment index, last token) so a broken transfer
resumes from its last page, and applies them through its own commit log. Applying is a
last-write-wins merge, so a page delivered twice, or data the target already holds from pending
writes, converges to the same content. ``STREAM_FETCH`` asks a node to pull ranges from a source;
bootstrap, decommission, removenode, move and repair are all built from it.

Token ranges are ``(left, right]`` in the partitioner's token order; ``left >= right`` wraps
around the ring (``left == right`` is the whole ring). The storage engine orders partitions by
the partitioner's token, so one range is one or two ordered scans; an engine left on the legacy
key-byte order (a data directory written before token order) is scanned whole and filtered.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import trio

from node.durable import write_atomic
from node.ring import Partitioner, Token
from node.runtime import offload
from node.storage.cells import Mutation, Partition
from node.storage.engine import StorageEngine

log = logging.getLogger("node.streaming")

VERB_STREAM_PAGE = "STREAM_PAGE"
VERB_STREAM_FETCH = "STREAM_FETCH"

# Bytes of partitions per page: big enough that per-request overhead is small next to the data,
# far below MAX_FRAME_BYTES (16 MiB) so a page always fits one frame.
PAGE_BYTES = 1 << 20
# Per page request: a page is a short scan on the source; a slow disk on a loaded host gets time.
PAGE_TIMEOUT = 30.0
# Attempts per page before a transfer gives up on a source (each retry resumes at the cursor).
PAGE_ATTEMPTS = 3
# Seconds after this node last took part in a transfer (serving pages or whole files, or
# receiving) during which its compactions leave SSTables that span split ranges alone: a join's new tokens make most of a
# source's files span, and re-cutting them all at once would compete with the very transfer
# the new tokens are for (the sources' disks write as much again as the target receives).
RESPLIT_HOLD_S = 30.0

Range = tuple[Token, Token]
Segment = tuple[Token | None, Token | None]


def range_contains(left: Token, right: Token, token: Token) -> bool:
    """Is ``token`` in the ring range ``(left, right]`` (wrapping when ``left >= right``)?"""
    if left < right:
        return left < token <= right
    return token > left or token <= right


def segments_of(ranges: Sequence[Range]) -> list[Segment]:
    """Non-wrapping scan bounds ``(start exclusive, end inclusive)``; ``None`` is unbounded."""
    out: list[Segment] = []
    for left, right in ranges:
        if left < right:
            out.append((left, right))
        else:
            out.append((left, None))
            out.append((None, right))
    return out


@dataclass
class StreamStats:
    """Counters of one node's streaming, reported by admin ops and the bench."""

    pages_sent: int = 0
    bytes_sent: int = 0
    partitions_sent: int = 0
    pages_received: int = 0
    bytes_received: int = 0
    partitions_received: int = 0
    transfers_done: int = 0
    transfers_failed: int = 0
    per_transfer: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counters (without the per-transfer log)."""
        return {k: v for k, v in self.__dict__.items() if k != "per_transfer"}


class Streamer:
    """Serves ``STREAM_PAGE`` / ``STREAM_FETCH`` and pulls ranges from other nodes."""

    def __init__(
        self,
        node_id: str,
        messaging: Any,
        engine: StorageEngine,
        partitioner: Partitioner,
        token_ordered: bool,
        sync_mode: str,
        has_table: Callable[[str, str], bool],
        rangecopy: Any = None,
    ) -> None:
        self.node_id = node_id
        self.messaging = messaging
        self.engine = engine
        self.partitioner = partitioner
        self.token_ordered = token_ordered
        self.sync_mode = sync_mode
        self.has_table = has_table
        self.stats = StreamStats()
        # Requests being served and when the last one ended (see RESPLIT_HOLD_S).
        self.serving = 0
        self.served_at: float | None = None
        # Whole-file transfer of SSTables inside the ranges (node/rangecopy.py); None: pages only.
        self.rangecopy = rangecopy
        if rangecopy is not None:
            rangecopy.partitioner = partitioner
            rangecopy.token_ordered = token_ordered
            rangecopy.serving_transfer = self.serving_transfer
        messaging.register(VERB_STREAM_PAGE, self._handle_page)
        messaging.register(VERB_STREAM_FETCH, self._handle_fetch)

    # ---- wire forms of ranges

    def encode_ranges(self, ranges: Sequence[Range]) -> list[list[str]]:
        """Ranges as token strings (RandomPartitioner tokens exceed msgpack integers)."""
        part = self.partitioner
        return [[part.to_string(l), part.to_string(r)] for l, r in ranges]

    def decode_ranges(self, raw: Any) -> list[Range]:
        """Inverse of :meth:`encode_ranges` (ValueError on a malformed list)."""
        if not isinstance(raw, list):
            raise ValueError("ranges must be a list of [left, right] token strings")
        part = self.partitioner
        out = []
        for item in raw:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError(f"bad range {item!r}")
            out.append((part.from_string(item[0]), part.from_string(item[1])))
        return out

    # ---- source side

    def iter_range_partitions(self, ks: str, table: str, segments: Sequence[Segment], start_seg: int = 0,
                              after: Token | None = None, skip: frozenset[int] = frozenset(),
                              skip_in: dict[int, frozenset[int]] | None = None) -> Iterator[tuple[int, Token, Partition]]:
        """``(segment index, token, partition)`` for every stored partition of the segments, in order
        (``skip``: SSTable generations the target already received whole; ``skip_in``: more per
        segment, the parents of slices it received)."""
        token = self.partitioner.token
        for i in range(start_seg, len(segments)):
            lo, hi = segments[i]
            if i == start_seg and after is not None:
                lo = after
            if self.token_ordered:
                here = skip | skip_in[i] if skip_in and i in skip_in else skip
                for p in self.engine.scan(ks, table, lo, hi, skip=here):
                    yield i, token(p.key), p
            else:
                # Legacy key-byte order: the token range is scattered over the whole table.
                for p in self.engine.scan(ks, table):
                    t = token(p.key)
                    if (lo is None or t > lo) and (hi is None or t <= hi):
                        yield i, t, p

    def read_page(self, ks: str, table: str, segments: Sequence[Segment], cursor: Any, max_bytes: int,
                  skip: frozenset[int] = frozenset(), skip_in: dict[int, frozenset[int]] | None = None) -> dict[str, Any]:
        """One page of partitions after ``cursor`` (runs in a worker thread)."""
        start_seg, after = 0, None
        if cursor is not None:
            start_seg, after = int(cursor[0]), self.partitioner.from_string(cursor[1])
        parts: list[Any] = []
        size = 0
        last: tuple[int, Token] | None = None
        it = self.iter_range_partitions(ks, table, segments, start_seg, after, skip, skip_in)
        packer = msgpack.Packer(use_bin_type=True)
        for seg, tok, p in it:
            obj = p.to_obj()
            size += len(packer.pack(obj))
            parts.append(obj)
            last = (seg, tok)
            if size >= max_bytes:
                break
        else:
            last = None
        nxt = None if last is None else [last[0], self.partitioner.to_string(last[1])]
        return {"parts": parts, "next": nxt, "bytes": size}

    async def _handle_page(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        ks, table = payload["ks"], payload["t"]
        if not self.has_table(ks, table):
            raise ValueError(f"unknown table {ks}.{table}")
        segments = segments_of(self.decode_ranges(payload["ranges"]))
        max_bytes = min(int(payload.get("max_bytes") or PAGE_BYTES), PAGE_BYTES * 4)
        skip = frozenset(int(g) for g in payload.get("skip") or ()) if self.token_ordered else frozenset()
        skip_in = {int(i): frozenset(int(g) for g in gens) for i, gens in (payload.get("skip_in") or [])} if self.token_ordered else {}
        with self.serving_transfer():
            page = await offload(self.read_page, ks, table, segments, payload.get("cursor"), max_bytes, skip, skip_in)
        self.stats.pages_sent += 1
        self.stats.bytes_sent += page["bytes"]
        self.stats.partitions_sent += len(page["parts"])
        return page

    @contextlib.contextmanager
    def serving_transfer(self) -> Iterator[None]:
        """Count one request of a transfer from this node (a page, a manifest, a file push) or
        one transfer into it."""
        self.serving += 1
        try:
            yield
        finally:
            self.serving -= 1
            self.served_at = trio.current_time()

    def resplit_allowed(self) -> bool:
        """May compactions re-cut SSTables at new split points now (no transfer from or into this
        node within RESPLIT_HOLD_S)?"""
        if self.serving:
            return False
        return self.served_at is None or trio.current_time() - self.served_at >= RESPLIT_HOLD_S

    # ---- target side

    def _apply_page(self, ks: str, table: str, parts: list[Any]) -> None:
        pos = None
        for obj in parts:
            pos = self.engine.apply(ks, table, Mutation.from_obj(obj))
        if pos is not None and self.sync_mode != "periodic":
            self.engine.wait_durable(pos)

    async def fetch(self, source: str, ks: str, table: str, ranges: Sequence[Range],
                    on_progress: Callable[[Any], None] | None = None, cursor: Any = None,
                    resume: str | None = None) -> dict[str, Any]:
        """Pull every partition of ``ranges`` from ``source`` into local storage; returns bytes and counts.

        Pipelined: the next page is requested while this one is applied (the source's scan and the
        transfer overlap the target's commit log and memtable work). ``on_progress`` gets each
        page's cursor once that page is applied, so a resumed transfer never skips data.
        """
        # Taking part as the target holds re-splits too: the files just received often span
        # the new points, and the next change would find them being rewritten.
        with self.serving_transfer():
            return await self._fetch(source, ks, table, ranges, on_progress, cursor, resume)

    async def _fetch(self, source: str, ks: str, table: str, ranges: Sequence[Range],
                     on_progress: Callable[[Any], None] | None, cursor: Any, resume: str | None) -> dict[str, Any]:
        wire = self.encode_ranges(ranges)
        total_bytes = 0
        total_parts = 0
        clock = trio.current_time()
        files: dict[str, Any] = {"skip": [], "bytes": 0, "files": 0}
        rc = self.rangecopy
        if rc is not None and rc.enabled and self.token_ordered:
            try:
                files = await rc.fetch_files(source, ks, table, segments_of(ranges), resume)
            except Exception as exc:  # noqa: BLE001 - the partition stream below carries everything
                log.warning("whole-file transfer of %s.%s from %s failed (%s); streaming partitions", ks, table, source, exc)
        skip = list(files["skip"])
        skip_in = [[i, gens] for i, gens in sorted(files.get("skip_in", {}).items())]
        file_seconds = round(trio.current_time() - clock, 3)
        send, recv = trio.open_memory_channel[tuple[dict[str, Any] | None, BaseException | None]](1)

        async def produce(cursor: Any) -> None:
            async with send:
                while True:
                    payload = {"ks": ks, "t": table, "ranges": wire, "cursor": cursor, "max_bytes": PAGE_BYTES, "skip": skip,
                               "skip_in": skip_in}
                    try:
                        page = await self._request_page(source, payload)
                    except Exception as exc:  # handed to the applying side, which raises it as is
                        await send.send((None, exc))
                        return
                    await send.send((page, None))
                    cursor = page["next"]
                    if cursor is None:
                        return

        failure: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, cursor)
            async with recv:
                async for page, error in recv:
                    if error is None and page is not None and page["parts"]:
                        try:
                            await offload(self._apply_page, ks, table, page["parts"])
                        except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                            error = exc
                    if error is not None or page is None:
                        # Raised as is after the nursery (inside, it would come wrapped in a group).
                        failure = error
                        nursery.cancel_scope.cancel()
                        break
                    parts = page["parts"]
                    total_bytes += int(page["bytes"])
                    total_parts += len(parts)
                    self.stats.pages_received += 1
                    self.stats.bytes_received += int(page["bytes"])
                    self.stats.partitions_received += len(parts)
                    if on_progress is not None:
                        on_progress(page["next"])
        if failure is not None:
            self.stats.transfers_failed += 1
            raise failure
        self.stats.transfers_done += 1
        result = {"source": source, "ks": ks, "t": table, "ranges": len(ranges), "bytes": total_bytes + int(files["bytes"]),
                  "partitions": total_parts, "seconds": round(trio.current_time() - clock, 3),
                  "file_bytes": int(files["bytes"]), "files": int(files["files"]), "file_seconds": file_seconds,
                  "stream_bytes": total_bytes, "stream_seconds": round(trio.current_time() - clock - file_seconds, 3)}
        self.stats.per_transfer.append(result)
        del self.stats.per_transfer[:-100]
        log.info("streamed %d partitions (%d bytes) of %s.%s in %d range(s) from %s", total_parts, total_bytes, ks, table, len(ranges), source)
        return result

    async def _request_page(self, source: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One page, retried from its cursor a few times before the source is given up."""
        for attempt in range(PAGE_ATTEMPTS - 1):
            try:
                return dict(await self.messaging.request(source, VERB_STREAM_PAGE, payload, PAGE_TIMEOUT))
            except Exception as exc:
                log.info("stream page from %s failed (%s); retrying from the cursor", source, exc)
                await trio.sleep(0.2 * (attempt + 1))
        # The last attempt's error is the transfer's.
        return dict(await self.messaging.request(source, VERB_STREAM_PAGE, payload, PAGE_TIMEOUT))

    async def _handle_fetch(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        ks, table = payload["ks"], payload["t"]
        if not self.has_table(ks, table):
            raise ValueError(f"unknown table {ks}.{table}")
        return await self.fetch(payload["source"], ks, table, self.decode_ranges(payload["ranges"]))

    async def fetch_into(self, target: str, source: str, ks: str, table: str, ranges: Sequence[Range], timeout: float,
                         resume: str | None = None) -> dict[str, Any]:
        """Make ``target`` pull ``ranges`` of ``ks.table`` from ``source`` (``target`` may be this node;
        ``resume`` names its resumable operation, node/rangecopy.py)."""
        if target == self.node_id:
            return await self.fetch(source, ks, table, ranges, resume=resume)
        payload = {"ks": ks, "t": table, "source": source, "ranges": self.encode_ranges(ranges)}
        reply = await self.messaging.request(target, VERB_STREAM_FETCH, payload, timeout)
        return dict(reply)


# The file naming the partition order of a storage directory, so a directory written in the old
# key-byte order is never read as if it were token-ordered (SSTables are sorted on disk).
SORT_ORDER_FILE = "SORT_ORDER"


def choose_sort_key(storage_dir: Path, partitioner: Partitioner) -> tuple[Callable[[bytes], Any] | None, bool]:
    """The engine's sort key for ``storage_dir``: the partitioner's token for new directories (and
    ones marked token-ordered), None (key bytes) for a directory that already holds data in the
    legacy order. Returns ``(sort_key, token_ordered)``."""
    marker = storage_dir / SORT_ORDER_FILE
    want = f"token:{partitioner.name}"
    if marker.exists():
        have = marker.read_text().strip()
        if have == want:
            return partitioner.token, True
        if have == "key":
            return None, False
        raise ValueError(f"{storage_dir} is ordered by {have!r}, not {want!r}: the partitioner cannot change")
    # Only SSTables carry an order; commit log records replay into a memtable of any order.
    legacy = storage_dir.exists() and any((storage_dir / "data").rglob("*-TOC.txt"))
    storage_dir.mkdir(parents=True, exist_ok=True)
    if legacy:
        # Written before token order: its SSTables are sorted by key bytes. Keep that order (range
        # scans then filter a whole table) rather than misread the files.
        write_atomic(marker, "key\n")
        return None, False
    write_atomic(marker, want + "\n")
    return partitioner.token, True
