"""Named-column reads over many SSTables (time-ordered, skipping files by column bounds, key cache)
answer what a whole-partition read, which visits every file, says about those columns."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from node.storage import Cell, Mutation, RangeTombstone, StorageConfig, StorageEngine
from storage_model import ManualClock

KEYS = [b"k%02d" % i for i in range(12)]
NAMES = ["a", "b", "m", "s:1", "s:2", "z"]


def _token(key: bytes) -> int:
    return (sum(key) * 7919) % 101


def _random_files(path: Path, seed: int) -> StorageEngine:
    """Eight flushes of random writes: cells, overwrites, cell, row and super-column deletes, TTLs;
    some flushes hold one column range only, so some files have bounds that rule reads out."""
    rng = random.Random(seed)
    clock = ManualClock()
    e = StorageEngine(path, StorageConfig(), clock, sort_key=_token)
    e.open()
    e.create_table("ks", "t")
    ts = 100
    for flush in range(8):
        names = rng.choice([NAMES, NAMES[:2], NAMES[4:], ["m"]])
        rows = flush % 3 == 0  # row and super-column deletes in these flushes only (the rest get bounds)
        for _ in range(25):
            key = rng.choice(KEYS)
            ts += rng.randrange(0, 3)  # ties too
            kind = rng.random()
            now = clock.wall_us() // 1_000_000
            if rows and kind < 0.06:
                m = Mutation(key, [], partition_tombstone=ts - rng.randrange(0, 40), partition_deletion_time=now)
            elif rows and kind < 0.1:
                m = Mutation(key, [], range_tombstones=[RangeTombstone("s:", ts - rng.randrange(0, 40), now)])
            elif kind < 0.2:
                m = Mutation(key, [Cell(rng.choice(names), None, ts - rng.randrange(0, 40), None, now)])
            else:
                ttl = rng.choice([None, None, None, 2])
                m = Mutation(key, [Cell(rng.choice(names), b"v%d" % ts, ts - rng.randrange(0, 40), ttl)])
            e.apply("ks", "t", m)
        if flush < 7:  # the last round stays in the memtable
            e.flush()
        clock.advance(1)
    return e


@pytest.mark.parametrize("seed", range(6))
def test_named_reads_agree_with_whole_partition_reads(tmp_path: Path, seed: int) -> None:
    e = _random_files(tmp_path, seed)
    files = e._tables[("ks", "t")].sstables
    assert len(files) == 7 and sum(r.column_bounds is not None for r in files) >= 4
    singles = [[n] for n in NAMES]
    pairs = [["a", "z"], ["b", "m"], ["s:1", "a"], ["m", "s:2"]]
    for _round in range(2):  # cold, then with every location in the key cache
        for key in KEYS:
            whole = e.read("ks", "t", key)
            for columns in singles + pairs:
                named = e.read("ks", "t", key, columns=columns)
                for n in columns:
                    want = whole.cells.get(n) if whole is not None else None
                    got = named.cells.get(n) if named is not None else None
                    assert got == want, (seed, key, columns, n)
    e.close()
