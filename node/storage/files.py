"""The storage engine's door to append-only files: open, write, fsync, read.

The commit log writes through :class:`FileOps`, so what "written" and "durable" mean is decided
in one place:

* :class:`OSFiles` (the default): a write goes to the OS at once (``os.write``), so a SIGKILL
  loses nothing the process wrote; only an OS crash or power loss loses what was not fsynced;
* :class:`VolatileFiles` (``[storage] volatile_unsynced = true``): the bytes written since the
  last fsync stay in this process's memory and reach the OS only at fsync, so a SIGKILL loses
  them exactly as a power loss would. The crash nemesis turns it on to make a process kill cost
  what periodic commit-log mode really risks;
* a simulated disk (``sim/``) can implement the same small interface.

SSTables are not written through this door: a flush or compaction fsyncs every component before
the TOC makes the SSTable visible, so a crash loses only an invisible, unfinished SSTable. They
do pass the disk nemesis's :class:`DiskFault` switch (``[storage] disk_faults``), which can fail
the data directory's disk as well as the commit log's: SSTable writes, and with EIO their reads.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Protocol

from ..runtime import fdatasync


class AppendFile(Protocol):
    """One file opened for appending."""

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole, or raise OSError)."""
        ...

    def fsync(self) -> None:
        """Make every byte written so far durable."""
        ...

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes (drops a partly written record)."""
        ...

    def unsynced_bytes(self) -> int:
        """Bytes written but not yet fsynced that a process crash would lose (0 for OS files)."""
        ...

    def close(self) -> None:
        """Release the file (without fsyncing)."""
        ...


class FileOps(Protocol):
    """Opening and reading the engine's append-only files."""

    name: str

    def create(self, path: Path) -> AppendFile:
        """Create (or empty) ``path`` and open it for appending."""
        ...

    def read(self, path: Path) -> bytes:
        """The file's bytes as a restarted process would find them."""
        ...


class _OSFile:
    """Writes go straight to the OS (a process crash keeps them)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def write(self, data: bytes) -> None:
        _write_all(self._fd, data)

    def fsync(self) -> None:
        _datasync(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def unsynced_bytes(self) -> int:
        return 0

    def close(self) -> None:
        os.close(self._fd)


class OSFiles:
    """The default door: plain OS files."""

    name = "os"

    def create(self, path: Path) -> AppendFile:
        """Create and open ``path`` for appending."""
        return _OSFile(path)

    def read(self, path: Path) -> bytes:
        """The file's bytes."""
        return Path(path).read_bytes()


class _VolatileFile:
    """Writes wait in memory until fsync hands them to the OS and syncs them."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._pending = bytearray()
        self._on_disk = 0  # bytes already handed to the OS
        self._lock = threading.Lock()  # the pending buffer (writers and the fsyncing thread)
        # One fsync at a time writes its buffer, so bytes reach the OS in the order written.
        self._sync_lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._pending += data

    def fsync(self) -> None:
        with self._sync_lock:
            with self._lock:
                data, self._pending = bytes(self._pending), bytearray()
            if data:
                _write_all(self._fd, data)
                self._on_disk += len(data)
            _datasync(self._fd)

    def truncate(self, size: int) -> None:
        with self._sync_lock, self._lock:
            if size >= self._on_disk:
                del self._pending[size - self._on_disk:]
            else:
                self._pending.clear()
                os.ftruncate(self._fd, size)
                self._on_disk = size

    def unsynced_bytes(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        # Unsynced bytes are dropped, as a crash would drop them; the commit log fsyncs first
        # whenever it closes a segment on purpose.
        os.close(self._fd)


class VolatileFiles:
    """Unsynced bytes live in process memory only: a SIGKILL loses them like a power loss."""

    name = "volatile"

    def create(self, path: Path) -> AppendFile:
        """Create ``path``; its bytes reach the OS at each fsync."""
        return _VolatileFile(path)

    def read(self, path: Path) -> bytes:
        """What the OS holds (a restarted process never sees another process's memory)."""
        return Path(path).read_bytes()


def file_ops(volatile_unsynced: bool, disk_faults: bool = False) -> FileOps:
    """The door a storage config asks for."""
    door: FileOps = VolatileFiles() if volatile_unsynced else OSFiles()
    return FaultyFiles(door) if disk_faults else door


def _datasync(fd: int) -> None:
    # fdatasync still persists the file size (needed to read appended records back) but skips
    # the mtime update that fsync would also write; through the runtime's door, which sim/ models.
    fdatasync(fd)


def _write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)
    if n == len(data):
        return
    view = memoryview(data)[n:]
    while view:
        n = os.write(fd, view)
        view = view[n:]


# The disks the switch can fail: the commit log's, and the data directory's (SSTables). Cassandra
# advises putting them on separate devices, so either may fail alone.
DISKS = ("commitlog", "data")


class DiskFault:
    """The disk nemesis's switch: while set, writes and fsyncs to the failing disk fail (and, with
    EIO, reads of the data disk's SSTables: a full disk still reads, a broken one does not)."""

    def __init__(self) -> None:
        self.errno: int | None = None  # errno.ENOSPC or errno.EIO while failing
        self.disk = "commitlog"  # which disk fails while errno is set (one of DISKS)
        self.failed_calls = 0  # writes and fsyncs refused since the node started
        self.failed_reads = 0  # SSTable reads refused since the node started

    def check(self, what: str, path: Path) -> None:
        """Raise the switched-on error for a commit log write or fsync of ``path``."""
        code = self.errno
        if code is not None and self.disk == "commitlog":
            self.failed_calls += 1
            raise OSError(code, f"{os.strerror(code)} (disk nemesis: {what} refused)", str(path))

    def check_data(self, what: str, path: Path) -> None:
        """Raise the switched-on error for an SSTable write (``create``, ``write``, ``fsync``) of ``path``."""
        code = self.errno
        if code is not None and self.disk == "data":
            self.failed_calls += 1
            raise OSError(code, f"{os.strerror(code)} (disk nemesis: SSTable {what} refused)", str(path))

    def check_read(self, path: Path) -> None:
        """Raise EIO for an SSTable read of ``path`` while the data disk fails with EIO."""
        if self.errno == errno.EIO and self.disk == "data":
            self.failed_reads += 1
            raise OSError(errno.EIO, f"{os.strerror(errno.EIO)} (disk nemesis: SSTable read refused)", str(path))


class _FaultyFile:
    """An append file whose writes and fsyncs fail while its door's switch is on."""

    def __init__(self, inner: AppendFile, fault: DiskFault, path: Path) -> None:
        self._inner, self._fault, self._path = inner, fault, path

    def write(self, data: bytes) -> None:
        self._fault.check("write", self._path)
        self._inner.write(data)

    def fsync(self) -> None:
        self._fault.check("fsync", self._path)
        self._inner.fsync()

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)  # cutting a torn record needs no space

    def unsynced_bytes(self) -> int:
        return self._inner.unsynced_bytes()

    def close(self) -> None:
        self._inner.close()


class FaultyFiles:
    """``[storage] disk_faults = true``: another door whose files fail on the disk nemesis's cue."""

    def __init__(self, inner: FileOps) -> None:
        self.inner = inner
        self.name = inner.name
        self.fault = DiskFault()

    def create(self, path: Path) -> AppendFile:
        """Create ``path`` (refused too while the disk is failing)."""
        self.fault.check("create", path)
        return _FaultyFile(self.inner.create(path), self.fault, path)

    def read(self, path: Path) -> bytes:
        """Reads keep working: a failing disk is refused writes, not reads."""
        return self.inner.read(path)


DISK_ERRORS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}


def disk_fault(files: FileOps) -> DiskFault | None:
    """The disk nemesis's switch of a door (None when ``[storage] disk_faults`` is off)."""
    return files.fault if isinstance(files, FaultyFiles) else None


def disk_admin(files: FileOps, action: str | None, error: str | None = None, disk: str | None = None) -> dict[str, object]:
    """The ``disk`` admin op: ``fail`` (with ``error`` ENOSPC or EIO, on ``disk`` commitlog, the
    default, or data), ``heal`` or ``status``; ValueError naming what was wrong."""
    if not isinstance(files, FaultyFiles):
        raise ValueError("disk faults are off on this node ([storage] disk_faults = false)")
    if action == "fail":
        if error not in DISK_ERRORS:
            raise ValueError(f"disk error must be one of {sorted(DISK_ERRORS)}, got {error!r}")
        if disk is not None and disk not in DISKS:
            raise ValueError(f"disk must be one of {', '.join(DISKS)}, got {disk!r}")
        files.fault.disk = disk or "commitlog"
        files.fault.errno = DISK_ERRORS[error]
    elif action == "heal":
        files.fault.errno = None
    elif action != "status":
        raise ValueError(f"disk action must be fail, heal or status, got {action!r}")
    code = files.fault.errno
    return {"failing": None if code is None else errno.errorcode[code], "disk": files.fault.disk,
            "failed_calls": files.fault.failed_calls, "failed_reads": files.fault.failed_reads}
