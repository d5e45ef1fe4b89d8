"""The corrupt nemesis's live mode and the disk nemesis's data disk, against a fake cluster whose
admin ops are answered by real engines in this process (the real cluster runs in
tests/e2e/test_live_storage_campaigns.py)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from nemesis.storage import CorruptNemesis, DiskNemesis, choose_live_damage, sstable_records
from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.files import disk_admin
from nemesis_runs import start_then_stop
from storage_model import ManualClock

KEYS = [b"k%03d" % i for i in range(40)]


def _engine(path: Path) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(disk_faults=True), ManualClock())
    e.open()
    e.create_table("ks", "t")
    return e


class LiveDB:
    """Running nodes: each an engine with the disk nemesis's switch; nothing is ever killed."""

    def __init__(self, root: Path, n: int = 3) -> None:
        self.root = root
        self.engines = {f"n{i}": _engine(root / f"n{i}") for i in range(1, n + 1)}
        for e in self.engines.values():
            for i, key in enumerate(KEYS):
                e.apply("ks", "t", Mutation(key, [Cell("c", b"v%d" % i, i + 1)]))
        self.calls: list[tuple[str, str]] = []

    def node_ids(self) -> list[str]:
        return sorted(self.engines)

    def storage_dir(self, nid: str) -> Path:
        return self.root / nid

    async def admin(self, nid: str, op: str, **f: Any) -> dict[str, Any]:
        self.calls.append((op, nid))
        e = self.engines[nid]
        if op == "flush":
            return {"flushed": e.flush()}
        if op == "compact":
            return {"compacted": [r for r in [e.compact("ks", "t", major=True)] if r]}
        if op == "storage":
            return {"tables": e.stats(), "corrupt": e.corrupt_sstables(), "quarantined": e.quarantined(),
                    "held": e.held_tables()}
        if op == "localread":
            p = e.read(f["keyspace"], f["table"], f["keys"][0])
            return {"rows": [{"key": f["keys"][0], "cells": sorted(p.cells) if p else []}]}
        if op == "disk":
            return disk_admin(e.files, f["action"], f.get("error"), f.get("disk"))
        if op == "scrub":
            e.verify()
            moved = e.discard_corrupt("ks", "t")
            return {"quarantined": {"ks.t": moved} if moved else {}, "repair": {"ranges": 4, "streamed_bytes": 7},
                    "released": e.release_reads()}
        raise AssertionError(op)

    async def kill(self, nid: str) -> None:
        raise AssertionError("a live nemesis step kills no node")

    async def restart(self, nid: str) -> None:
        raise AssertionError("a live nemesis step restarts no node")


def test_live_damage_is_drawn_inside_one_record_of_a_data_file(tmp_path: Path) -> None:
    db = LiveDB(tmp_path, 1)
    db.engines["n1"].flush()
    damage, key = choose_live_damage(tmp_path / "n1", random.Random(5))
    records = {k: (off, n) for k, off, n in sstable_records(tmp_path / "n1" / damage.file)}
    assert set(records) == set(KEYS) and damage.mode == "live" and damage.action == "bitflip"
    off, n = records[key]
    assert all(off * 8 <= bit < (off + n) * 8 for bit in damage.offsets)
    assert choose_live_damage(tmp_path / "nothing", random.Random(5)) is None


@pytest.mark.parametrize("seed", range(4))
def test_live_corrupt_is_found_by_the_read_quarantined_held_then_scrubbed(tmp_path: Path, seed: int) -> None:
    db = LiveDB(tmp_path)

    start, stop = start_then_stop(lambda: CorruptNemesis(db, modes=("live",)), seed)
    v = start.value
    nid = v["node"]
    assert v["mode"] == "live" and v["kind"] == "sstable" and v["file"].endswith("-Data.db")
    # The running node met the damage on the read of that record's key: named, moved aside,
    # and the table's reads held (its other data may be stale without the file) until the scrub.
    assert v["outcome"] == "quarantined", v
    assert "corrupt SSTable" in v["read_error"] and v["key"].encode() in KEYS
    assert not (tmp_path / nid / v["file"]).exists() and list(v["held"]) == ["ks.t"]
    assert ("kill", nid) not in db.calls
    assert stop.value["result"][nid]["released"] == ["ks.t"]
    assert "live bitflip" in v["summary"] and "served again" in stop.value["summary"]
    assert db.engines[nid].held_tables() == {}


@pytest.mark.parametrize("error", ["ENOSPC", "EIO"])
def test_a_failing_data_disk_refuses_the_flush_keeps_the_data_and_flushes_when_healed(tmp_path: Path, error: str) -> None:
    db = LiveDB(tmp_path)
    for e in db.engines.values():
        e.flush()  # an SSTable to compact and to read from
        e.apply("ks", "t", Mutation(b"new", [Cell("c", b"x", 99)]))
    seed = next(s for s in range(50) if _error_drawn(s) == error)

    start, stop = start_then_stop(lambda: DiskNemesis(db, disks=("data",)), seed)
    v = start.value
    nid = v["node"]
    assert v["disk"] == "data" and v["disk_error"] == error and v["said"] == {**v["said"], "failing": error, "disk": "data"}
    assert "flush failed" in v["flush"]["error"] and "compaction failed" in v["compact"]["error"], v
    if error == "EIO":  # a broken disk fails reads of its SSTables too; a full one still reads
        assert "Input/output error" in v["read"]["error"] and "read refused" in v["summary"]
    else:
        assert v["read"] is None
    assert "flush refused, compaction refused" in v["summary"]
    r = stop.value["result"][nid]
    # The refused flush and compaction (with EIO the compaction's read of its input, and the read).
    assert r["failed_calls"] + r["failed_reads"] >= 2 and (r["failed_reads"] >= 2) == (error == "EIO")
    assert r["kept_memtables"] == 1
    assert r["flush"] == {"flushed": ["ks.t"]} and r["sstables"] >= 1
    assert db.engines[nid].stats()["ks.t"]["flushing_memtables"] == 0
    assert "flushed 1 tables" in stop.value["summary"]
    e = db.engines[nid]
    assert all(e.read("ks", "t", k) is not None for k in [*KEYS, b"new"])


def _error_drawn(seed: int) -> str:
    """The error DiskNemesis.start draws with random.Random(seed) (a node, then a round of the data
    disk's (disk, error) plans)."""
    rng = random.Random(seed)
    rng.choice(["n1", "n2", "n3"])
    plans = ["data:ENOSPC", "data:EIO"]
    rng.shuffle(plans)
    return plans.pop().split(":")[1]


def test_the_corrupt_and_disk_nemeses_take_their_kinds_in_shuffled_rounds() -> None:
    from nemesis.storage import _next_choice

    rng, round_ = random.Random(1), []
    picks = [_next_choice(["commitlog", "data"], round_, rng) for _ in range(6)]
    assert all(sorted(picks[i:i + 2]) == ["commitlog", "data"] for i in (0, 2, 4)), picks
    state = random.getstate()
    assert _next_choice(["live"], [], rng) == "live" and random.getstate() == state



def test_the_checkers_count_only_a_commit_log_disk_heal_as_a_kill() -> None:
    from checkers.durability import crashes
    from harness.history import Op

    def heal(restarted: list[str]) -> Op:
        return Op(1, 20, "nemesis", "info", "stop-disk", None,
                  {"nodes": ["n2"], "restarted": restarted, "disks": {"n2": "commitlog" if restarted else "data"}})

    # With volatile files (crash in the run) a restart after a commit log disk failure is a crash;
    # a healed data disk's node is flushed, not killed, and lost nothing.
    assert [c["nodes"] for c in crashes([heal(["n2"])], kills_lose=True)] == [["n2"]]
    assert crashes([heal([])], kills_lose=True) == []
    old = Op(1, 20, "nemesis", "info", "stop-disk", None, {"nodes": ["n2"]})  # before data disks
    assert [c["nodes"] for c in crashes([old], kills_lose=True)] == [["n2"]]
