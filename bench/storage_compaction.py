"""Major compaction against sqlite3's VACUUM on the same cells, in the same process: a quick check
of the compaction path (bench/storage.py is the full benchmark). Prints figures, never fails.

The data is bench/storage.py's: cell ``i`` is column ``c{i // partitions}`` of partition
``partition-{i % partitions}``, so every partition has a slice of its columns in every SSTable and
the compaction merges each partition from all of them. Rates are MB of input per second, by wall
time and by the process's CPU time (the steadier figure on a loaded machine).

    .venv/bin/python bench/storage_compaction.py                  # this checkout
    .venv/bin/python bench/storage_compaction.py --tree /tmp/old  # another checkout's engine
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import twin_data  # bench/ is on sys.path when a bench runs as a script


def main() -> None:
    """Write the SSTables, compact them, then VACUUM a sqlite3 database of the same cells."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", metavar="DIR", help="import node/ from this checkout")
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--sstables", type=int, default=4)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1, help="compactions (each of a fresh copy of the SSTables)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve()) if args.tree else str(Path(__file__).resolve().parents[1]))
    from node.runtime import Clock
    from node.storage import Cell, Mutation, StorageConfig, StorageEngine

    root = Path(tempfile.mkdtemp(prefix="ringlab-bench-compaction-"))
    try:
        cfg = StorageConfig(commitlog_sync="periodic", commitlog_sync_period_ms=10_000)
        src = root / "src"
        e = StorageEngine(src, cfg, Clock())
        e.open()
        e.create_table("ks", "t")
        sq = sqlite3.connect(root / "ref.db")
        sq.execute("PRAGMA journal_mode=WAL")
        sq.execute("CREATE TABLE cells (pk BLOB, col TEXT, value BLOB, ts INTEGER, PRIMARY KEY (pk, col)) WITHOUT ROWID")
        value = random.Random(42).randbytes(args.value_bytes)
        n, parts, k = args.cells, args.partitions, args.sstables
        twin_data.load(e, sq, Mutation, Cell, cells=n, partitions=parts, sstables=k, value=value)
        e.close()
        sq.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"{k} SSTables, {n:,} cells of {args.value_bytes} B in {parts:,} partitions"
              + (f" (node/ from {args.tree})" if args.tree else ""))
        for rnd in range(args.rounds):
            work = root / f"round{rnd}"
            shutil.copytree(src, work)
            e = StorageEngine(work, cfg, Clock())
            e.open()
            w0, c0 = time.perf_counter(), time.process_time()
            result = e.compact("ks", "t", major=True)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            assert result is not None
            mb = result["bytes_in"] / 1e6
            e.close()
            shutil.rmtree(work, ignore_errors=True)
            size = os.path.getsize(root / "ref.db") / 1e6
            w0, c0 = time.perf_counter(), time.process_time()
            sq.execute("VACUUM")
            swall, scpu = time.perf_counter() - w0, time.process_time() - c0
            print(f"round {rnd}: compaction of {mb:.0f} MB: {mb / wall:.1f} MB/s wall, {mb / cpu:.1f} MB/s CPU; "
                  f"sqlite3 VACUUM of {size:.0f} MB: {size / swall:.1f} MB/s wall, {size / scpu:.1f} MB/s CPU; "
                  f"ratio {mb / wall / (size / swall):.2f}x wall, {mb / cpu / (size / scpu):.2f}x CPU")
        sq.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
