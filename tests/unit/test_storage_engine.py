"""Storage engine behaviour on real files: limits, ordering, deletes, purging, snapshots, sync modes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from node.runtime import Clock
from node.storage import (
    Cell,
    InvalidMutation,
    InvalidName,
    Mutation,
    RangeTombstone,
    StorageConfig,
    StorageEngine,
    TableOptions,
    UnknownTable,
)
from storage_model import ManualClock


def _engine(path: Path, clock: Clock | None = None, **cfg: object) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(**cfg), clock or ManualClock())  # type: ignore[arg-type]
    e.open()
    return e


def test_limits_and_bad_input_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    e = _engine(tmp_path, max_key_bytes=16, max_value_bytes=32)
    e.create_table("ks", "t")
    with pytest.raises(InvalidMutation, match="partition key is 17 bytes; the limit is 16"):
        e.apply("ks", "t", Mutation(b"k" * 17, [Cell("c", b"v", 1)]))
    with pytest.raises(InvalidMutation, match="value of column 'c' is 33 bytes; the limit is 32"):
        e.apply("ks", "t", Mutation(b"k", [Cell("c", b"v" * 33, 1)]))
    with pytest.raises(InvalidMutation, match="must be bytes"):
        e.apply("ks", "t", Mutation(b"k", [Cell("c", "text", 1)]))  # type: ignore[arg-type]
    with pytest.raises(InvalidMutation, match="ttl"):
        e.apply("ks", "t", Mutation(b"k", [Cell("c", b"v", 1, ttl=-5)]))
    with pytest.raises(InvalidMutation, match="empty mutation"):
        e.apply("ks", "t", Mutation(b"k"))
    with pytest.raises(UnknownTable, match="ks.nope"):
        e.apply("ks", "nope", Mutation(b"k", [Cell("c", b"v", 1)]))
    with pytest.raises(InvalidName):
        e.create_table("ks", "bad name!")
    # Nothing refused was stored, and the engine keeps serving.
    e.apply("ks", "t", Mutation(b"k", [Cell("c", b"ok", 2)]))
    assert e.read("ks", "t", b"k").cells["c"].value == b"ok"
    e.close()


def test_equal_timestamps_converge_tombstone_then_greater_value(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    e.apply("ks", "t", Mutation(b"k", [Cell("a", b"small", 5), Cell("b", b"zzz", 5)]))
    e.flush()
    e.apply("ks", "t", Mutation(b"k", [Cell("a", b"big", 5), Cell("b", None, 5)]))
    p = e.read("ks", "t", b"k")
    assert p.cells["a"].value == b"small"  # "small" > "big" bytewise
    assert p.cells["b"].value is None
    e.close()


def test_time_ordered_table_returns_newest_first_and_limit_counts_live_cells(tmp_path: Path) -> None:
    clock = ManualClock()
    e = _engine(tmp_path, clock)
    e.create_table("ks", "inbox", TableOptions(column_order="time"))
    for i in range(10):
        e.apply("ks", "inbox", Mutation(b"user", [Cell(f"msg{i}", b"body%d" % i, 100 + i)]))
        if i == 4:
            e.flush()
    e.apply("ks", "inbox", Mutation(b"user", [Cell("msg8", None, 200)]))
    p = e.read("ks", "inbox", b"user", limit=3)
    names = list(p.cells)
    # The tombstone (newest) comes first and does not count toward the limit.
    assert names == ["msg8", "msg9", "msg7", "msg6"]
    assert list(p.live_cells(clock.wall_us() // 10**6)) == ["msg9", "msg7", "msg6"]
    e.close()


def test_super_column_delete_is_a_range_tombstone_over_its_prefix(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    e.apply("ks", "t", Mutation(b"k", [Cell("s1:a", b"1", 1), Cell("s1:b", b"2", 1), Cell("s2:a", b"3", 1)]))
    e.flush()
    e.apply("ks", "t", Mutation(b"k", range_tombstones=[RangeTombstone("s1:", 5)]))
    e.apply("ks", "t", Mutation(b"k", [Cell("s1:c", b"new", 6)]))
    now = e.now_s()
    assert {n: c.value for n, c in e.read("ks", "t", b"k").live_cells(now).items()} == {
        "s1:c": b"new", "s2:a": b"3"}
    assert list(e.read("ks", "t", b"k", columns=["s1:"]).live_cells(now)) == ["s1:c"]
    e.close()


def test_ttl_cells_expire_and_become_tombstones_in_compaction(tmp_path: Path) -> None:
    clock = ManualClock()
    e = _engine(tmp_path, clock)
    e.create_table("ks", "t", TableOptions(gc_grace_seconds=100))
    e.apply("ks", "t", Mutation(b"k", [Cell("c", b"v", 1, ttl=10), Cell("d", b"w", 1)]))
    e.flush()
    assert "c" in e.read("ks", "t", b"k").live_cells(e.now_s())
    clock.advance(10)
    assert "c" not in e.read("ks", "t", b"k").live_cells(e.now_s())
    e.compact("ks", "t", major=True)
    cell = e.read("ks", "t", b"k").cells["c"]
    assert cell.value is None and cell.local_deletion_time == e.now_s()
    clock.advance(100)
    e.compact("ks", "t", major=True)
    assert "c" in e.read("ks", "t", b"k").cells  # gc_grace has passed, but not strictly (Cassandra: ldt < now - grace)
    clock.advance(1)
    e.compact("ks", "t", major=True)
    assert "c" not in e.read("ks", "t", b"k").cells  # purged after gc_grace
    e.close()


def test_tombstone_is_not_purged_while_an_sstable_outside_the_compaction_holds_older_data(tmp_path: Path) -> None:
    clock = ManualClock()
    e = _engine(tmp_path, clock)
    e.create_table("ks", "t", TableOptions(gc_grace_seconds=5, compaction_min_threshold=2,
                                           compaction_max_threshold=2, compaction_min_sstable_bytes=1))
    e.apply("ks", "t", Mutation(b"k", [Cell("x", b"old", 1), Cell("pad", b"p" * 5000, 1)]))
    e.flush()  # the big SSTable with the old value
    e.apply("ks", "t", Mutation(b"k", [Cell("x", None, 2)]))
    e.flush()
    e.apply("ks", "t", Mutation(b"other", [Cell("y", b"1", 3)]))
    e.flush()
    clock.advance(10)
    result = e.compact("ks", "t")
    assert result is not None and len(result["inputs"]) == 2  # the two small ones only
    assert "x" not in e.read("ks", "t", b"k").live_cells(e.now_s())
    e.compact("ks", "t", major=True)  # everything together: now tombstone and value both go
    p = e.read("ks", "t", b"k")
    assert "x" not in p.cells and p.cells["pad"].value
    e.close()


def test_row_delete_shadows_older_cells_and_survives_restart(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    e.apply("ks", "t", Mutation(b"k", [Cell("a", b"1", 10), Cell("b", b"2", 30)]))
    e.flush()
    e.apply("ks", "t", Mutation(b"k", partition_tombstone=20))
    e.close()
    e = _engine(tmp_path)
    p = e.read("ks", "t", b"k")
    assert p.partition_tombstone == 20 and list(p.cells) == ["b"]
    e.close()


def test_scan_uses_sort_key_bounds_start_exclusive_end_inclusive(tmp_path: Path) -> None:
    e = StorageEngine(tmp_path, StorageConfig(), ManualClock(), sort_key=lambda k: int(k) % 10)
    e.open()
    e.create_table("ks", "t")
    for i in range(40):
        e.apply("ks", "t", Mutation(str(i).encode(), [Cell("c", b"v", 1)]))
        if i in (9, 25):
            e.flush()
    got = [(int(p.key) % 10, p.key) for p in e.scan("ks", "t", start=3, end=6)]
    assert got == sorted(got)
    assert {sk for sk, _ in got} == {4, 5, 6} and len(got) == 12
    assert len(list(e.scan("ks", "t"))) == 40
    e.close()


def test_flush_deletes_commit_log_segments_and_replay_skips_flushed_records(tmp_path: Path) -> None:
    e = _engine(tmp_path, commitlog_segment_size_mb=1)
    e.create_table("ks", "t")
    for i in range(3000):
        e.apply("ks", "t", Mutation(b"k%d" % (i % 100), [Cell(f"c{i}", b"v" * 500, i)]))
    assert e.stats()["_commitlog"]["segments"] > 1
    e.flush()
    assert e.stats()["_commitlog"]["segments"] == 1
    e.apply("ks", "t", Mutation(b"k1", [Cell("late", b"x", 1)]))
    e.close()
    e = _engine(tmp_path)
    assert e.replay_report.applied == 1
    assert e.read("ks", "t", b"k1").cells["late"].value == b"x"
    assert len(e.read("ks", "t", b"k1").cells) == 31
    e.close()


def test_drop_table_forgets_data_and_log_records(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    e.apply("ks", "t", Mutation(b"k", [Cell("c", b"v", 1)]))
    e.drop_table("ks", "t")
    e.create_table("ks", "t")
    assert e.read("ks", "t", b"k") is None
    e.close()
    e = _engine(tmp_path)
    assert e.read("ks", "t", b"k") is None  # the old table's log record is not replayed into the new one
    assert list(e.tables()) == [("ks", "t")]
    e.close()


def test_snapshots_hard_link_live_sstables_and_survive_compaction(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    e.create_table("ks", "t")
    for i in range(5):
        e.apply("ks", "t", Mutation(b"k", [Cell(f"c{i}", b"v", i)]))
        e.flush()
    root = e.snapshot("before")
    linked = sorted(p.name for p in (root / "ks" / "t").iterdir())
    assert len([n for n in linked if n.endswith("TOC.txt")]) == 5
    e.compact("ks", "t", major=True)
    assert all((root / "ks" / "t" / n).stat().st_nlink == 1 for n in linked)
    assert e.list_snapshots() == ["before"]
    with pytest.raises(InvalidName):
        e.snapshot("before")
    with pytest.raises(InvalidName):
        e.snapshot("../escape")
    e.clear_snapshot("before")
    assert e.list_snapshots() == []
    e.close()


@pytest.mark.parametrize("mode", ["batch", "group"])
def test_concurrent_writers_coalesce_fsyncs(tmp_path: Path, mode: str) -> None:
    e = _engine(tmp_path, Clock(), commitlog_sync=mode, commitlog_group_window_ms=5)
    e.create_table("ks", "t")
    led_before = e._cl().syncs_led

    def writer(n: int) -> None:
        for i in range(25):
            pos = e.apply("ks", "t", Mutation(b"k%d" % n, [Cell(f"c{i}", b"v", i)]))
            e.wait_durable(pos)
            assert e._cl().synced_position() >= pos

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    syncs = e._cl().syncs_led - led_before
    assert 0 < syncs < 200  # 200 acknowledged writes, fewer fsyncs
    e.close()
