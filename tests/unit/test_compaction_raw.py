"""Compaction's byte path (records copied or concatenated, not decoded) writes exactly the files the
decode, merge, purge and encode path writes, and leaves every partition that needs it to that path."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from node.storage import Cell, Mutation, RangeTombstone, StorageConfig, StorageEngine, TableOptions, compaction
from storage_model import ManualClock

ROUNDS = 4


def _write(path: Path, seed: int) -> None:
    """SSTables whose partitions are every case: columns in disjoint ranges per SSTable, in one
    SSTable only, overwritten across SSTables, tombstones, TTL cells, row and range deletes."""
    rng = random.Random(seed)
    clock = ManualClock()
    e = StorageEngine(path, StorageConfig(), clock)
    e.open()
    e.create_table("ks", "t", TableOptions(gc_grace_seconds=5))
    ts = 1
    for rnd in range(ROUNDS):
        for p in range(40):
            key = b"p%03d" % p
            kind = p % 8
            cells: list[Cell] = []
            m = Mutation(key)
            if kind in (0, 1, 2):  # appends: a new range of columns per SSTable
                cells = [Cell(f"r{rnd}-c{j:02d}", rng.randbytes(rng.randrange(1, 300)), ts + j) for j in range(rng.randrange(1, 20))]
                if kind == 2:  # and a TTL cell, expired by the compaction or not
                    cells.append(Cell(f"r{rnd}-t", b"t", ts, ttl=rng.choice([3, 1000])))
            elif kind == 3 and rnd == p % ROUNDS:  # in one SSTable only
                cells = [Cell(f"c{j}", b"v%d" % j, ts) for j in range(5)]
            elif kind == 4:  # the same columns overwritten
                cells = [Cell(f"c{j}", b"v%d-%d" % (rnd, j), ts + rng.randrange(-3, 3)) for j in range(4)]
            elif kind == 5:  # a tombstone among the appends (purged: past gc_grace at the compaction)
                cells = [Cell(f"r{rnd}-a", b"x", ts), Cell(f"r{rnd}-b", None, ts)]
            elif kind == 6 and rnd == 2:  # a row delete, or a range delete of a super column, and newer cells
                cells = [Cell(f"r{rnd}-s:{j}", b"n", ts + 1) for j in range(2)]
                if rng.random() < 0.5:
                    m.partition_tombstone, m.partition_deletion_time = ts, clock.wall_us() // 1_000_000
                else:
                    m.range_tombstones = [RangeTombstone("r1-", ts, clock.wall_us() // 1_000_000)]
            elif kind in (6, 7):
                cells = [Cell(f"r{rnd}-s:{j}", b"z", ts) for j in range(3)]
            m.cells = cells
            if cells or m.partition_tombstone is not None or m.range_tombstones:
                e.apply("ks", "t", m)
            ts += 25
        e.flush()
        clock.advance(2)
    e.close()


def _compact(path: Path) -> dict[str, bytes]:
    clock = ManualClock()
    clock.advance(ROUNDS * 2 + 10)  # past gc_grace for the early tombstones and every TTL
    e = StorageEngine(path, StorageConfig(), clock)
    e.open()
    result = e.compact("ks", "t", major=True)
    assert result is not None
    e.close()
    out = {}
    for gen in result["outputs"]:
        for f in sorted(path.rglob(f"{gen}-*")):
            out[f.name] = f.read_bytes()
    assert out
    return out


@pytest.mark.parametrize("seed", range(3))
def test_byte_path_writes_the_same_files(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "a", seed)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    used: list[Any] = []
    raw_merge = compaction._raw_merge

    def counting(group: list[tuple[Any, ...]]) -> Any:
        out = raw_merge(group)
        used.append((len(group), out is not None))
        return out

    monkeypatch.setattr(compaction, "_raw_merge", counting)
    fast = _compact(tmp_path / "a")
    monkeypatch.setattr(compaction, "_raw_merge", lambda group: None)
    slow = _compact(tmp_path / "b")
    assert fast == slow
    # Both ways were taken: concatenated (several inputs), copied (one) and the full path.
    assert {(n > 1, raw) for n, raw in used} >= {(True, True), (False, True), (True, False)}
