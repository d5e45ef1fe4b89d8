"""Snapshot housekeeping: the listsnapshots and clearsnapshot admin ops (nodetool listsnapshots /
clearsnapshot) on a real engine, and the admin nemesis's reading of ringctl's listing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from nemesis.housekeeping import snapshot_tags
from node.protocol import InvalidRequest
from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage_admin import storage_ops
from storage_model import ManualClock


def _ops(tmp_path: Path) -> tuple[StorageEngine, dict]:
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock())
    e.open()
    e.create_table("ks", "t")
    e.apply("ks", "t", Mutation(b"k", [Cell("c", b"v", 1)]))
    return e, storage_ops(SimpleNamespace(engine=e))


def test_list_then_clear_one_then_all(tmp_path: Path) -> None:
    e, ops = _ops(tmp_path)
    try:
        e.snapshot("before-cleanup")
        e.apply("ks", "t", Mutation(b"k2", [Cell("c", b"v", 2)]))
        e.snapshot("second")
        e.compact("ks", "t", major=True)  # the first SSTables are now the snapshots' alone
        listed = trio.run(ops["listsnapshots"], {})["snapshots"]
        assert [s["tag"] for s in listed] == ["before-cleanup", "second"]
        first = listed[0]
        # Data, index, summary, filter, statistics, digest, TOC of one SSTable, and schema.json.
        assert first["files"] == 8 and first["bytes"] > 0
        # After the compaction no live SSTable shares the snapshot's files: all its bytes are its own.
        assert first["true_bytes"] == first["bytes"]
        e.snapshot("third")  # hard links of the live SSTable only: nothing of its own but schema.json
        third = trio.run(ops["listsnapshots"], {})["snapshots"][2]
        assert third["true_bytes"] == (tmp_path / "snapshots" / "third" / "schema.json").stat().st_size
        assert trio.run(ops["clearsnapshot"], {"tag": "before-cleanup"}) == {"cleared": ["before-cleanup"]}
        assert not (tmp_path / "snapshots" / "before-cleanup").exists()
        assert e.read("ks", "t", b"k") is not None  # live data untouched
        assert trio.run(ops["clearsnapshot"], {"all": True}) == {"cleared": ["second", "third"]}
        assert trio.run(ops["listsnapshots"], {}) == {"snapshots": []}
    finally:
        e.close()


def test_clearsnapshot_refuses_unknown_and_ambiguous_requests(tmp_path: Path) -> None:
    e, ops = _ops(tmp_path)
    try:
        with pytest.raises(InvalidRequest, match="no snapshot 'nope'"):
            trio.run(ops["clearsnapshot"], {"tag": "nope"})
        with pytest.raises(InvalidRequest, match="tag or all"):
            trio.run(ops["clearsnapshot"], {})
        with pytest.raises(InvalidRequest, match="tag or all"):
            trio.run(ops["clearsnapshot"], {"tag": "x", "all": True})
        with pytest.raises(InvalidRequest, match="must be 1-128"):
            trio.run(ops["clearsnapshot"], {"tag": "../data"})
    finally:
        e.close()


def test_snapshot_tags_reads_ringctl_listing() -> None:
    assert snapshot_tags("There are no snapshots\n") == []
    out = ("campaign-1-17000  8 files  1.20 KiB (true size 0 B)\n"
           "campaign-2-17001  8 files  1.30 KiB (true size 0 B)\n")
    assert snapshot_tags(out) == ["campaign-1-17000", "campaign-2-17001"]
