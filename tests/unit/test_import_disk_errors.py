"""A whole-file import (node/rangecopy.py) on a failing disk: every file operation of
``import_sstable`` failing in turn is a named StorageError (its restamp of the received
Statistics and digest raised a bare OSError), nothing half-imported is served, and the import
works once the disk is back."""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path

import pytest

from node.ring import Murmur3Partitioner
from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.errors import DiskFull, StorageError, StorageFailure
from nth_fault import NthFault, injected
from storage_model import ManualClock

sys.path.insert(0, str(Path(__file__).parent))
from test_disk_fault_sweep import fast_dir  # noqa: E402,F401  (a directory in memory: no real fsyncs)

PART = Murmur3Partitioner()


def _engine(path: Path) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(), ManualClock(), PART.token)  # type: ignore[arg-type]
    e.open()
    e.create_table("ks", "t")
    return e


def _received(src: StorageEngine, incoming: Path) -> int:
    """A copy of the source's SSTable in ``incoming`` (what a transfer receives); its generation."""
    reader = src._table("ks", "t").sstables[0]
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir()
    for f in reader.files():
        shutil.copy(f, incoming / f.name)
    return reader.generation


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_every_file_operation_of_an_import_may_fail_and_is_named(fast_dir: Path, code: int) -> None:  # noqa: F811
    tmp_path = fast_dir
    src = _engine(tmp_path / "src")
    for i in range(20):
        src.apply("ks", "t", Mutation(b"k%d" % i, [Cell("v", b"x" * 50, i + 1)]))
    src.flush()
    counted = NthFault(tmp_path, reads=True)
    dst = _engine(tmp_path / "dst")
    gen = _received(src, tmp_path / "in")
    with injected(counted):
        dst.import_sstable("ks", "t", tmp_path / "in", gen)
    assert counted.count > 8 and ("open", str(tmp_path / "in" / f"{gen}-Statistics.db")) in counted.ops
    dst.close()
    problems = []
    for n in range(1, counted.count + 1):
        shutil.rmtree(tmp_path / "dst", ignore_errors=True)
        dst = _engine(tmp_path / "dst")
        gen = _received(src, tmp_path / "in")
        fault = NthFault(tmp_path, n, code, reads=True)
        with injected(fault):
            try:
                dst.import_sstable("ks", "t", tmp_path / "in", gen)
            except StorageError as exc:
                if isinstance(exc, StorageFailure) and code == errno.ENOSPC and not isinstance(exc, DiskFull):
                    problems.append(f"call {n} {fault.hit}: a full disk is not DiskFull: {exc!r}")
            except OSError as exc:
                problems.append(f"call {n} {fault.hit}: bare {exc!r}")
        # Served whole or not at all, and once the disk is back the import goes through.
        got = [dst.read("ks", "t", b"k%d" % i) is not None for i in range(20)]
        if any(got) and not all(got):
            problems.append(f"call {n} {fault.hit}: half imported")
        if not all(got):
            dst.import_sstable("ks", "t", tmp_path / "in", _received(src, tmp_path / "in"))
            if dst.read("ks", "t", b"k7") is None:
                problems.append(f"call {n} {fault.hit}: the retry imported nothing")
        dst.close()
    src.close()
    assert not problems, "\n".join(problems)
