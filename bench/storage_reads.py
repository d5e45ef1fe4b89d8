"""Point reads of one named column across 4 SSTables against sqlite3, in the same process: a
quick check of the read path (bench/storage.py is the full benchmark). Prints figures, never fails.

Rates divide by the process's CPU time, the steadier figure on a loaded machine.

    .venv/bin/python bench/storage_reads.py                  # this checkout
    .venv/bin/python bench/storage_reads.py --tree /tmp/old  # another checkout's engine
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import twin_data  # bench/ is on sys.path when a bench runs as a script

CELLS, PARTITIONS, SSTABLES, VALUE_BYTES = 200_000, 10_000, 4, 100


def main() -> None:
    """Write 4 SSTables, then time point reads of the engine and of sqlite3 (WAL) on the same data."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", metavar="DIR", help="import node/ from this checkout")
    ap.add_argument("--reads", type=int, default=20_000)
    ap.add_argument("--cells", type=int, default=CELLS, help=f"cells (default {CELLS:,}; bench/storage.py has 1,000,000)")
    ap.add_argument("--interleave", action="store_true",
                    help="every SSTable holds every 4th column name, so no file's column bounds rule a read out "
                         "(each read visits 2.5 SSTables on average, as before column bounds)")
    ap.add_argument("--compact", action="store_true", help="then major-compact to one SSTable and measure again")
    ap.add_argument("--token", action="store_true",
                    help="order partitions by their Murmur3 token, as a node does (default: by key bytes)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve()) if args.tree else str(Path(__file__).resolve().parents[1]))
    from node.runtime import Clock
    from node.storage import Cell, Mutation, StorageConfig, StorageEngine

    root = Path(tempfile.mkdtemp(prefix="ringlab-bench-reads-"))
    try:
        sort_key = None
        if args.token:
            from node.murmur3 import murmur3_token as sort_key
        e = StorageEngine(root / "engine", StorageConfig(commitlog_sync="periodic", commitlog_sync_period_ms=10_000), Clock(),
                          sort_key)
        e.open()
        e.create_table("ks", "t")
        sq = sqlite3.connect(root / "ref.db")
        sq.execute("PRAGMA journal_mode=WAL")
        sq.execute("CREATE TABLE cells (pk BLOB, col TEXT, value BLOB, ts INTEGER, PRIMARY KEY (pk, col))")
        value = random.Random(1).randbytes(VALUE_BYTES)
        twin_data.load(e, sq, Mutation, Cell, cells=args.cells, partitions=PARTITIONS, sstables=SSTABLES, value=value,
                       **({"interleave": True} if args.interleave else {}))
        cols = args.cells // PARTITIONS

        def engine(count: int, rng: random.Random) -> float:
            read = e.read
            t0 = time.process_time()
            for _ in range(count):
                r = read("ks", "t", b"partition-%06d" % rng.randrange(PARTITIONS), columns=["c%06d" % rng.randrange(cols)])
                assert r is not None
            return count / (time.process_time() - t0)

        def sqlite(count: int, rng: random.Random) -> float:
            ex = sq.execute
            t0 = time.process_time()
            for _ in range(count):
                r = ex("SELECT value, ts FROM cells WHERE pk = ? AND col = ?",
                       (b"partition-%06d" % rng.randrange(PARTITIONS), "c%06d" % rng.randrange(cols))).fetchone()
                assert r is not None
            return count / (time.process_time() - t0)

        print(f"{e.stats()['ks.t']['sstable_count']} SSTables, {args.cells:,} cells in {PARTITIONS:,} partitions"
              + (", interleaved columns" if args.interleave else "") + (", Murmur3 order" if args.token else "")
              + (f" (node/ from {args.tree})" if args.tree else ""))
        for rnd in range(3):
            ours, theirs = engine(args.reads, random.Random(rnd)), sqlite(args.reads, random.Random(rnd))
            print(f"round {rnd}: engine {ours:,.0f} reads/s, sqlite3 {theirs:,.0f} reads/s (CPU time), ratio {ours / theirs:.2f}x")
        if args.compact:
            e.compact("ks", "t", major=True)
            print(f"after a major compaction: {e.stats()['ks.t']['sstable_count']} SSTable")
            for rnd in range(3):
                ours, theirs = engine(args.reads, random.Random(rnd)), sqlite(args.reads, random.Random(rnd))
                print(f"round {rnd}: engine {ours:,.0f} reads/s, sqlite3 {theirs:,.0f} reads/s (CPU time), "
                      f"ratio {ours / theirs:.2f}x (1 SSTable)")
        e.close()
        sq.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
