"""The commit log's file door: with volatile_unsynced, a crash keeps exactly what was fsynced."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.files import OSFiles, VolatileFiles, file_ops
from storage_model import ManualClock


def test_volatile_file_reaches_the_os_only_at_fsync(tmp_path: Path) -> None:
    path = tmp_path / "f"
    f = VolatileFiles().create(path)
    f.write(b"synced")
    f.fsync()
    f.write(b"-lost")
    assert f.unsynced_bytes() == 5
    # A crash: the process's memory is gone, what the OS holds is what a restart reads.
    assert VolatileFiles().read(path) == b"synced"
    f.truncate(8)  # a torn append cut back, partly in memory
    f.fsync()
    assert path.read_bytes() == b"synced-l"
    f.truncate(3)  # below what reached the OS
    f.write(b"!")
    f.fsync()
    f.close()
    assert path.read_bytes() == b"syn!"


def test_os_file_writes_survive_a_process_crash_without_fsync(tmp_path: Path) -> None:
    path = tmp_path / "f"
    f = OSFiles().create(path)
    f.write(b"kept")
    assert f.unsynced_bytes() == 0
    assert path.read_bytes() == b"kept"
    f.close()


def test_the_config_chooses_the_door() -> None:
    assert file_ops(True).name == "volatile"
    assert file_ops(False).name == "os"
    with pytest.raises(ValueError, match="memtable_flush_threshold_kb"):
        StorageConfig(memtable_flush_threshold_kb=-1).validate()
    assert StorageConfig(memtable_flush_threshold_kb=32).flush_threshold_bytes == 32 * 1024
    assert StorageConfig(commitlog_segment_size_kb=16).segment_bytes == 16 * 1024
    assert StorageConfig().segment_bytes == 32 * 1024 * 1024


def _engine(path: Path, **cfg: object) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(**cfg), ManualClock())  # type: ignore[arg-type]
    e.open()
    e.create_table("ks", "t")
    return e


def _write(e: StorageEngine, keys: range) -> None:
    for i in keys:
        pos = e.apply("ks", "t", Mutation(b"k%04d" % i, [Cell("c", b"v%d" % i, i + 1)]))
        e.wait_durable(pos)  # periodic: returns at once; batch: waits for the fsync


def _present(path: Path, keys: range, **cfg: object) -> list[int]:
    """Open the engine again (as a restarted process would) and list the keys it holds."""
    e = StorageEngine(path, StorageConfig(**cfg), ManualClock())  # type: ignore[arg-type]
    e.open()
    try:
        return [i for i in keys if e.read("ks", "t", b"k%04d" % i) is not None]
    finally:
        e.close()


@pytest.mark.parametrize("segment_kb", [0, 1])
def test_periodic_volatile_crash_loses_exactly_the_unsynced_writes(tmp_path: Path, segment_kb: int) -> None:
    e = _engine(tmp_path, commitlog_sync="periodic", volatile_unsynced=True, commitlog_segment_size_kb=segment_kb)
    _write(e, range(0, 60))
    e.sync_commitlog()  # the periodic tick
    _write(e, range(60, 100))
    assert e.stats()["_commitlog"]["unsynced_bytes"] > 0
    # SIGKILL: the engine is abandoned, never closed (closing would fsync).
    assert _present(tmp_path, range(100)) == list(range(60))
    if segment_kb:
        assert e.stats()["_commitlog"]["segments"] > 2, "1 KB segments rolled while writing"


def test_periodic_crash_with_os_files_keeps_every_write(tmp_path: Path) -> None:
    e = _engine(tmp_path, commitlog_sync="periodic")
    _write(e, range(50))
    assert e.stats()["_commitlog"]["unsynced_bytes"] == 0
    assert _present(tmp_path, range(50)) == list(range(50))


@pytest.mark.parametrize("mode", ["batch", "group"])
def test_batch_and_group_volatile_crash_lose_no_acknowledged_write(tmp_path: Path, mode: str) -> None:
    e = _engine(tmp_path, commitlog_sync=mode, volatile_unsynced=True, commitlog_group_window_ms=1,
                commitlog_segment_size_kb=1)
    _write(e, range(80))
    assert e.stats()["_commitlog"]["unsynced_bytes"] == 0
    assert _present(tmp_path, range(80)) == list(range(80))


def test_a_graceful_close_keeps_everything_in_volatile_mode(tmp_path: Path) -> None:
    e = _engine(tmp_path, commitlog_sync="periodic", volatile_unsynced=True)
    _write(e, range(30))
    e.close()
    assert _present(tmp_path, range(30)) == list(range(30))


def test_small_memtable_threshold_flushes_in_kb(tmp_path: Path) -> None:
    e = _engine(tmp_path, memtable_flush_threshold_kb=4)
    _write(e, range(200))
    assert e.maybe_flush() == ["ks.t"]
    assert e.stats()["ks.t"]["sstable_count"] == 1
    e.close()
