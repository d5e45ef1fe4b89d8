"""The Trio facade over :class:`StorageEngine`: background sync, flush and compaction tasks.

Blocking work (fsync waits, flushes, compactions, snapshots) runs in worker threads via
``node.runtime.offload`` (inline under sim/) so the event loop keeps serving. Reads stay synchronous on purpose:
a point read is tens of microseconds of CPU over mmap'd files, cheaper than a thread hop; a node
that expects cold-disk reads can wrap them with :meth:`read_in_thread`.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..runtime import offload

from .cells import Mutation, Partition
from .engine import StorageEngine
from .errors import StorageError

log = logging.getLogger("ringlab.storage")

# How often the background task checks memtable sizes and commit log space: often enough that a
# memtable overshoots its threshold by at most about a second of writes.
FLUSH_CHECK_INTERVAL_S = 1.0
# How often background compaction looks for due buckets; flushes are rarely more frequent.
COMPACTION_CHECK_INTERVAL_S = 5.0


class AsyncStorageEngine:
    """Owns the background tasks of one engine inside the caller's nursery (``run``)."""

    def __init__(self, engine: StorageEngine, *, flush_check_interval_s: float = FLUSH_CHECK_INTERVAL_S,
                 compaction_interval_s: float = COMPACTION_CHECK_INTERVAL_S) -> None:
        self.engine = engine
        self._flush_interval = flush_check_interval_s
        self._compaction_interval = compaction_interval_s
        # One flush and one compaction at a time keeps background I/O from starving the node.
        self._flush_limiter = trio.CapacityLimiter(1)
        self._compaction_limiter = trio.CapacityLimiter(1)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run periodic commit log sync, threshold flushes and compaction until cancelled."""
        async with trio.open_nursery() as nursery:
            if self.engine.config.commitlog_sync == "periodic":
                nursery.start_soon(self._sync_loop)
            nursery.start_soon(self._flush_loop)
            nursery.start_soon(self._compaction_loop)
            task_status.started()

    async def _sync_loop(self) -> None:
        period = self.engine.config.commitlog_sync_period_ms / 1000
        while True:
            await self.engine.clock.sleep(period)
            await offload(self.engine.sync_commitlog)

    async def _flush_loop(self) -> None:
        while True:
            await self.engine.clock.sleep(self._flush_interval)
            try:
                await offload(self.engine.maybe_flush, limiter=self._flush_limiter)
            except (StorageError, OSError) as exc:
                # The memtable is kept and retried next round; the node keeps serving.
                log.error("background flush failed: %s", exc)

    async def _compaction_loop(self) -> None:
        while True:
            await self.engine.clock.sleep(self._compaction_interval)
            try:
                await offload(self.engine.compact_due, limiter=self._compaction_limiter)
            except (StorageError, OSError) as exc:
                log.error("background compaction failed: %s", exc)

    async def apply(self, keyspace: str, table: str, mutation: Mutation) -> int:
        """Apply a mutation; returns once it is durable as the sync mode requires."""
        pos = self.engine.apply(keyspace, table, mutation)
        if self.engine.config.commitlog_sync != "periodic":
            await offload(self.engine.wait_durable, pos)
        return pos

    def read(self, keyspace: str, table: str, key: bytes, columns: list[str] | None = None,
             limit: int | None = None, now_s: int | None = None) -> Partition | None:
        """Synchronous read (see the module docstring)."""
        return self.engine.read(keyspace, table, key, columns=columns, limit=limit, now_s=now_s)

    async def read_in_thread(self, keyspace: str, table: str, key: bytes, columns: list[str] | None = None,
                             limit: int | None = None, now_s: int | None = None) -> Partition | None:
        """The same read in a worker thread."""
        return await offload(
            lambda: self.engine.read(keyspace, table, key, columns=columns, limit=limit, now_s=now_s))

    async def scan_list(self, keyspace: str, table: str, start: Any = None, end: Any = None) -> list[Partition]:
        """A whole range scan materialized in a worker thread (for streaming ranges)."""
        return await offload(lambda: list(self.engine.scan(keyspace, table, start, end)))

    async def flush(self, keyspace: str | None = None, table: str | None = None) -> list[str]:
        """Flush memtables in a worker thread."""
        return await offload(self.engine.flush, keyspace, table, limiter=self._flush_limiter)

    async def compact(self, keyspace: str, table: str, major: bool = False) -> dict[str, Any] | None:
        """Compact one table in a worker thread."""
        return await offload(self.engine.compact, keyspace, table, major,
                                             limiter=self._compaction_limiter)

    async def snapshot(self, tag: str) -> str:
        """Flush and snapshot in a worker thread; returns the snapshot directory."""
        path = await offload(self.engine.snapshot, tag, limiter=self._flush_limiter)
        return str(path)

    async def clear_snapshot(self, tag: str) -> None:
        """Delete a snapshot in a worker thread."""
        await offload(self.engine.clear_snapshot, tag)

    def list_snapshots(self) -> list[str]:
        """Existing snapshot tags."""
        return self.engine.list_snapshots()
