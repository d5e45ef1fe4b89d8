"""A write loop for the SIGKILL crash test: ``python -m tests.cluster.crashwriter DIR MODE``.

It writes numbered cells from several Trio tasks (with the node's background duties: periodic
fsync, threshold flushes, compaction, each in a worker thread) and prints ``A <n>`` on stdout
once write ``n`` is acknowledged (durable as the sync mode requires). In periodic mode it also
prints ``S <count>`` after each periodic fsync: the first ``count`` acknowledged writes (in the
order of the ``A`` lines) were acknowledged before that fsync began, so they would survive even an
OS crash. Memtables are tiny so flushes and compactions
run while the process is killed.

``--fail-fsync-after N`` makes every ``fdatasync`` after the first N fail with EIO (a failing
disk); a write that then fails prints ``F <n>`` instead of being acknowledged.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import trio

from node.runtime import Clock, offload
from node.storage.cells import Cell, Mutation
from node.storage.config import StorageConfig, TableOptions
from node.storage.engine import StorageEngine
from node.storage.errors import StorageFailure

# Distinct partitions the writes spread over: enough for several SSTables per flush round.
PARTITIONS = 500


def partition_of(n: int) -> bytes:
    """The partition key that write ``n`` goes to."""
    return b"p%04d" % (n % PARTITIONS)


def cell_of(n: int) -> Cell:
    """The cell that write ``n`` stores (its value names ``n`` so a reader can verify it)."""
    return Cell(f"c{n:09d}", b"value-%d" % n, n)


def _fail_fsync_after(n: int) -> None:
    """From the (n+1)th call on, fdatasync fails with EIO, as a dying disk's would."""
    real, calls = os.fdatasync, [0]

    def failing(fd: int) -> None:
        calls[0] += 1
        if calls[0] > n:
            raise OSError(errno.EIO, "Input/output error (injected)")
        real(fd)

    os.fdatasync = failing


async def _main(args: argparse.Namespace) -> None:
    if args.fail_fsync_after is not None:
        _fail_fsync_after(args.fail_fsync_after)
    cfg = StorageConfig(commitlog_sync=args.mode, commitlog_sync_period_ms=args.period_ms,
                        commitlog_group_window_ms=5, memtable_flush_threshold_mb=1,
                        commitlog_segment_size_mb=1)
    engine = StorageEngine(Path(args.dir), cfg, Clock())
    engine.open()
    engine.create_table("ks", "t", TableOptions(compaction_min_threshold=2))
    lock = threading.Lock()
    acked = [0]  # how many writes were acknowledged so far
    out = sys.stdout

    if args.mode == "periodic":
        plain_sync = engine.sync_commitlog

        def reporting_sync() -> int:
            with lock:
                covered = acked[0]
            pos = plain_sync()
            with lock:
                out.write(f"S {covered}\n")
                out.flush()
            return pos

        engine.sync_commitlog = reporting_sync  # type: ignore[method-assign]

    async def every(seconds: float, duty: Callable[[], object], retry: bool = True) -> None:
        # A failed flush or compaction keeps its inputs and is tried again next round; a failed
        # periodic fsync ends the program, as it always did.
        while True:
            await trio.sleep(seconds)
            try:
                await offload(duty)
            except (StorageFailure, OSError):
                if not retry:
                    raise

    async def apply(m: Mutation) -> None:
        pos = engine.apply("ks", "t", m)
        if args.mode != "periodic":
            await offload(engine.wait_durable, pos)

    async def writer(task: int) -> None:
        n = task
        while True:
            try:
                await apply(Mutation(partition_of(n), [cell_of(n)]))
            except StorageFailure:
                with lock:
                    out.write(f"F {n}\n")
                    out.flush()
                n += args.tasks
                await trio.sleep(0.01)
                continue
            with lock:
                acked[0] += 1
                out.write(f"A {n}\n")
                out.flush()
            n += args.tasks
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        if args.mode == "periodic":
            nursery.start_soon(every, args.period_ms / 1000, engine.sync_commitlog, False)
        nursery.start_soon(every, 0.05, engine.maybe_flush)
        nursery.start_soon(every, 0.2, engine.compact_due)
        out.write("READY\n")
        out.flush()
        for task in range(args.tasks):
            nursery.start_soon(writer, task)


def main() -> None:
    """Parse arguments and write until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir")
    parser.add_argument("mode", choices=["periodic", "batch", "group"])
    parser.add_argument("--period-ms", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--fail-fsync-after", type=int, default=None)
    trio.run(_main, parser.parse_args())


if __name__ == "__main__":
    main()
