"""Storage engine benchmark against Python's sqlite3, measured in the same run.

Workload: ``--cells`` cells (default 1,000,000) of ``--value-bytes`` (100) spread over
``--partitions`` (10,000) partitions. Prints writes/s and p50/p99 per write for each sync mode,
point reads/s (hits and misses), partition reads/s, range scan cells/s, compaction MB/s and peak
RSS, each with the same workload on sqlite3 (WAL, one statement per commit, synchronous=NORMAL
for periodic and FULL for batch/group) and the ratio engine/sqlite.

fsync-per-write modes (batch, group, sqlite FULL) run ``--durable-writes`` writes rather than the
full set: at a few milliseconds per fsync a million of them would take hours.

Each read figure alternates the two stores in ``READ_SLICES`` slices of its reads (the same keys
for both), so a load change on a shared machine hits both sides of a ratio alike.
``--tree DIR`` measures the engine of another checkout (same bench, same sqlite3).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# Alternations of engine and sqlite3 per read figure (see the module docstring).
READ_SLICES = 10


def _tree() -> str:
    """The checkout whose node/ is measured: ``--tree DIR`` (read before argparse, since the
    imports below depend on it), else this one."""
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--tree" and i + 1 < len(argv):
            return str(Path(argv[i + 1]).resolve())
        if arg.startswith("--tree="):
            return str(Path(arg.split("=", 1)[1]).resolve())
    return str(Path(__file__).resolve().parents[1])


sys.path.insert(0, _tree())

from node.runtime import Clock  # noqa: E402
from node.storage import Cell, Mutation, StorageConfig, StorageEngine  # noqa: E402


def pct(lat: list[float], q: float) -> float:
    """Percentile ``q`` of latencies (seconds) in microseconds."""
    s = sorted(lat)
    return s[min(len(s) - 1, int(q * len(s)))] * 1e6


def cell_at(i: int, partitions: int) -> tuple[bytes, str]:
    """The (partition key, column) of cell ``i``."""
    return b"partition-%06d" % (i % partitions), "c%06d" % (i // partitions)


class Report:
    """Collects rows of (metric, engine, sqlite) and prints them with ratios."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float | None, str]] = []

    def add(self, name: str, ours: float, theirs: float | None, unit: str) -> None:
        self.rows.append((name, ours, theirs, unit))
        ratio = f"{ours / theirs:6.2f}x" if theirs else "      "
        ref = f"{theirs:14,.1f}" if theirs is not None else " " * 14
        print(f"  {name:<44} {ours:14,.1f} {ref}  {ratio}  {unit}", flush=True)


def engine_writes(path: Path, mode: str, n: int, partitions: int, value: bytes, threads: int,
                  offset: int = 0) -> tuple[float, list[float], StorageEngine]:
    """Write ``n`` cells (in ``threads`` threads, waiting for durability); returns rate, latencies."""
    cfg = StorageConfig(commitlog_sync=mode, commitlog_sync_period_ms=10_000)
    e = StorageEngine(path, cfg, Clock())
    e.open()
    e.create_table("ks", "t")
    lat: list[float] = []
    per_thread = n // threads
    stop_flusher = threading.Event()

    def flusher() -> None:
        # The node flushes and syncs in the background; so does the benchmark.
        last_sync = time.monotonic()
        while not stop_flusher.wait(0.05):
            e.maybe_flush()
            if mode == "periodic" and time.monotonic() - last_sync > cfg.commitlog_sync_period_ms / 1000:
                e.sync_commitlog()
                last_sync = time.monotonic()

    def work(t: int) -> None:
        mine = []
        clock = time.perf_counter
        apply, wait = e.apply, e.wait_durable
        for j in range(per_thread):
            i = offset + t + j * threads
            key, col = cell_at(i, partitions)
            t0 = clock()
            pos = apply("ks", "t", Mutation(key, [Cell(col, value, i)]))
            wait(pos)
            mine.append(clock() - t0)
        lat.extend(mine)

    bg = threading.Thread(target=flusher)
    bg.start()
    t0 = time.perf_counter()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    stop_flusher.set()
    bg.join()
    return per_thread * threads / elapsed, lat, e


def sqlite_open(path: Path, sync: str) -> sqlite3.Connection:
    """A WAL-mode sqlite3 database with one table of cells, autocommit (one statement per commit)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync}")
    db.execute("CREATE TABLE IF NOT EXISTS cells (pk BLOB, col TEXT, value BLOB, ts INTEGER, "
               "PRIMARY KEY (pk, col)) WITHOUT ROWID")
    return db


def sqlite_writes(db: sqlite3.Connection, n: int, partitions: int, value: bytes, offset: int = 0
                  ) -> tuple[float, list[float]]:
    """``n`` single-statement commits; returns rate and latencies."""
    lat = []
    clock = time.perf_counter
    ex = db.execute
    t0 = clock()
    for i in range(offset, offset + n):
        key, col = cell_at(i, partitions)
        s = clock()
        ex("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?)", (key, col, value, i))
        lat.append(clock() - s)
    return n / (clock() - t0), lat


def main() -> None:
    """Run every phase and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--durable-writes", type=int, default=2_000)
    ap.add_argument("--threads", type=int, default=8, help="writer threads for batch mode")
    ap.add_argument("--group-threads", type=int, default=64,
                    help="writer threads for group mode (it pays off only with many concurrent writers)")
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to put the data (default: a temp dir)")
    ap.add_argument("--tree", metavar="DIR", help="import node/ from this checkout")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="ringlab-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)
    value = rng.randbytes(args.value_bytes)
    n, parts = args.cells, args.partitions
    print(f"storage bench: {n:,} cells of {args.value_bytes} B in {parts:,} partitions, data in {root}"
          + (f" (node/ from {args.tree})" if args.tree else ""))
    print(f"  {'metric':<44} {'ringlab':>14} {'sqlite3':>14}  {'ratio':>7}")
    rep = Report()

    # -- durable modes first (small), so the big periodic run's page cache does not skew them
    sq_full = sqlite_open(root / "full.db", "FULL")
    sq_rate, sq_lat = sqlite_writes(sq_full, args.durable_writes, parts, value)
    sq_full.close()
    for mode, threads in (("batch", 1), ("batch", args.threads), ("group", args.group_threads)):
        d = root / f"engine-{mode}-{threads}"
        rate, lat, e = engine_writes(d, mode, args.durable_writes, parts, value, threads)
        e.close()
        rep.add(f"{mode} writes/s ({threads} thread{'s' if threads > 1 else ''}) vs FULL", rate, sq_rate, "writes/s")
        rep.add(f"{mode} p50 write ({threads}t)", pct(lat, 0.5), pct(sq_lat, 0.5), "us")
        rep.add(f"{mode} p99 write ({threads}t)", pct(lat, 0.99), pct(sq_lat, 0.99), "us")
        shutil.rmtree(d, ignore_errors=True)

    # -- periodic: the full data set
    rate, lat, e = engine_writes(root / "engine", "periodic", n, parts, value, 1)
    sq = sqlite_open(root / "normal.db", "NORMAL")
    sq_rate, sq_lat = sqlite_writes(sq, n, parts, value)
    rep.add("periodic writes/s (1 thread) vs NORMAL", rate, sq_rate, "writes/s")
    rep.add("periodic p50 write", pct(lat, 0.5), pct(sq_lat, 0.5), "us")
    rep.add("periodic p99 write", pct(lat, 0.99), pct(sq_lat, 0.99), "us")
    e.flush()
    sstables = e.stats()["ks.t"]["sstable_count"]

    cols = n // parts

    def engine_reads(hit: bool, whole: bool, count: int, rng: random.Random) -> float:
        """Seconds for ``count`` engine reads."""
        read = e.read
        t0 = time.perf_counter()
        for _ in range(count):
            p = rng.randrange(parts)
            key = b"partition-%06d" % p if hit else b"missing-%06d" % p
            if whole:
                r = read("ks", "t", key)
            else:
                r = read("ks", "t", key, columns=["c%06d" % rng.randrange(cols)])
            assert (r is not None) == hit
        return time.perf_counter() - t0

    def sqlite_reads(hit: bool, whole: bool, count: int, rng: random.Random) -> float:
        """Seconds for ``count`` sqlite3 reads of the same keys."""
        ex = sq.execute
        t0 = time.perf_counter()
        for _ in range(count):
            p = rng.randrange(parts)
            key = b"partition-%06d" % p if hit else b"missing-%06d" % p
            if whole:
                r = ex("SELECT col, value, ts FROM cells WHERE pk = ?", (key,)).fetchall()
                assert bool(r) == hit
            else:
                r = ex("SELECT value, ts FROM cells WHERE pk = ? AND col = ?",
                       (key, "c%06d" % rng.randrange(cols))).fetchone()
                assert (r is not None) == hit
        return time.perf_counter() - t0

    def paired(hit: bool, whole: bool, count: int) -> tuple[float, float]:
        """Reads/s of the engine and of sqlite3, alternating slices of the same keys."""
        ours = theirs = 0.0
        per = max(1, count // READ_SLICES)
        for _ in range(READ_SLICES):
            seed = rng.getrandbits(32)
            ours += engine_reads(hit, whole, per, random.Random(seed))
            theirs += sqlite_reads(hit, whole, per, random.Random(seed))
        return per * READ_SLICES / ours, per * READ_SLICES / theirs

    reads = args.reads
    rep.add(f"point reads/s, hits ({sstables} SSTables)", *paired(True, False, reads), "reads/s")
    rep.add(f"point reads/s, misses ({sstables} SSTables)", *paired(False, False, reads), "reads/s")
    rep.add(f"partition reads/s ({n // parts} cells, {sstables} SSTables)", *paired(True, True, reads // 10),
            "reads/s")

    result = e.compact("ks", "t", major=True)
    assert result is not None
    comp_rate = result["bytes_in"] / 1e6 / result["seconds"]
    rep.add(f"major compaction ({result['bytes_in'] / 1e6:.0f} MB in)", comp_rate, None, "MB/s")
    sq_size = os.path.getsize(root / "normal.db")
    t0 = time.perf_counter()
    sq.execute("VACUUM")
    rep.add("  sqlite3 VACUUM (rewrite) for reference", sq_size / 1e6 / (time.perf_counter() - t0), None, "MB/s")

    rep.add("point reads/s, hits (1 SSTable)", *paired(True, False, reads), "reads/s")
    rep.add("point reads/s, misses (1 SSTable)", *paired(False, False, reads), "reads/s")
    rep.add("partition reads/s (1 SSTable)", *paired(True, True, reads // 10), "reads/s")

    t0 = time.perf_counter()
    cells = sum(len(p.cells) for p in e.scan("ks", "t"))
    scan_rate = cells / (time.perf_counter() - t0)
    assert cells == n
    t0 = time.perf_counter()
    rows = sum(1 for _ in sq.execute("SELECT pk, col, value, ts FROM cells ORDER BY pk, col"))
    rep.add("range scan cells/s (full table)", scan_rate, rows / (time.perf_counter() - t0), "cells/s")
    e.close()
    sq.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rep.add("peak RSS of the whole run", rss_mb, None, "MiB")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
