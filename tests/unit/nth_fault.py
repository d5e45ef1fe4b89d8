"""Fail the Nth file operation under one directory (FoundationDB's buggify, libfiu's "fail the
Nth syscall"): a test shim over the calls node code makes to the OS.

Every path the store writes by (the commit log door, SSTable components, the TOC rename, schema
and state files, hints, snapshot links, imports, directory fsyncs, unlinks) ends in one of the
calls patched here, so one counter numbers them all, whichever door a file goes through. A run
without a fault (``fail_at = None``) counts them; a sweep then fails each number in turn.

* ``write`` (``os.write`` and writes to files from ``open``): the failing call first writes half
  its bytes, as a disk filling up mid-write does (a torn record);
* ``fsync`` (through node/runtime.py's System): with ``fsyncgate``, the bytes the failed fsync
  should have made durable are recorded as lost; :meth:`NthFault.power_loss` zeroes them, as a
  crash after a kernel dropped the dirty pages leaves them (PostgreSQL's fsyncgate, 2018);
* ``read`` (a file opened for reading, only with ``reads``: a disk that cannot read it back);
* ``open`` (a file opened for writing), ``rename``/``replace``/``link``/``mkdir``, ``unlink``
  (never with ENOSPC: removing needs no space).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from node.runtime import System, use_system

_WRITE_MODES = ("w", "a", "x", "+")


class NthFault:
    """Counts file operations under ``root``; the ``fail_at``-th one raises OSError(``code``)."""

    def __init__(self, root: Path, fail_at: int | None = None, code: int = errno.EIO, fsyncgate: bool = False,
                 only: tuple[str, str] | None = None, reads: bool = False) -> None:
        self.root = str(root)
        # (kind, file name suffix): number only those calls (a unit test failing one chosen call)
        self.only = only
        # Number (and fail) opens for reading too: a disk that cannot read a file back.
        self.reads = reads
        self.fail_at = fail_at
        self.code = code
        self.fsyncgate = fsyncgate
        self.count = 0
        self.ops: list[tuple[str, str]] = []  # (kind, path) of every counted call, in order
        self.hit: tuple[str, str] | None = None  # the call that failed
        self.lost: list[tuple[str, int, int]] = []  # fsyncgate: (path, start, end) never durable
        self._synced: dict[tuple[int, int], int] = {}  # (dev, inode) -> bytes fsynced
        self.active = True

    def _mine(self, path: Any) -> bool:
        try:
            return os.fspath(path).startswith(self.root)
        except TypeError:
            return False

    def check(self, kind: str, path: Any) -> bool:
        """Count one call; True if it must fail (the caller raises, after any partial effect)."""
        if not self.active or not self._mine(path):
            return False
        if kind == "unlink" and self.code == errno.ENOSPC:
            return False
        if self.only is not None and (kind != self.only[0] or not os.fspath(path).endswith(self.only[1])):
            return False
        self.count += 1
        self.ops.append((kind, os.fspath(path)))
        if self.count == self.fail_at:
            self.hit = (kind, os.fspath(path))
            return True
        return False

    def error(self, path: Any) -> OSError:
        """The OSError the failing call raises."""
        return OSError(self.code, f"{os.strerror(self.code)} (injected at call {self.fail_at})", os.fspath(path))

    def power_loss(self) -> None:
        """Zero the byte ranges failed fsyncs never made durable (fsyncgate)."""
        for path, start, end in self.lost:
            if os.path.exists(path) and os.path.getsize(path) > start:
                with open(path, "r+b") as f:
                    f.seek(start)
                    f.write(b"\0" * (min(end, os.path.getsize(path)) - start))

    def note_sync(self, fd: int, failed: bool) -> None:
        """Track durable sizes per file so a failed fsync knows which bytes it left at risk."""
        st = os.fstat(fd)
        if not os.path.isfile(_fd_path(fd)):
            return
        key = (st.st_dev, st.st_ino)
        if failed:
            if self.fsyncgate and st.st_size > self._synced.get(key, 0):
                self.lost.append((_fd_path(fd), self._synced.get(key, 0), st.st_size))
        else:
            self._synced[key] = st.st_size


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class _FaultySystem(System):
    """fsync and fdatasync numbered with the rest (node code reaches them through node/runtime.py)."""

    def __init__(self, fault: NthFault) -> None:
        self.fault = fault

    def _sync(self, fd: int, real: Any) -> None:
        path = _fd_path(fd)
        if self.fault.check("fsync", path):
            self.fault.note_sync(fd, failed=True)
            raise self.fault.error(path)
        if not self.fault._mine(path):
            real(fd)  # the sweep's own files are never power-cycled: their fsyncs cost nothing
        else:
            self.fault.note_sync(fd, failed=False)

    def fsync(self, fd: int) -> None:
        self._sync(fd, os.fsync)  # (real fsyncs made a sweep of 500 calls take minutes)

    def fdatasync(self, fd: int) -> None:
        self._sync(fd, os.fdatasync)


class _FaultyFileObject:
    """A file from ``open`` whose writes and flushes are numbered."""

    def __init__(self, inner: Any, path: Any, fault: NthFault) -> None:
        self._inner, self._path, self._fault = inner, path, fault

    def write(self, data: Any) -> int:
        if self._fault.check("write", self._path):
            self._inner.write(data[: len(data) // 2])
            self._inner.flush()
            raise self._fault.error(self._path)
        return self._inner.write(data)

    def flush(self) -> None:
        if self._fault.check("flush", self._path):
            raise self._fault.error(self._path)
        self._inner.flush()

    def __enter__(self) -> _FaultyFileObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def injected(fault: NthFault) -> Iterator[NthFault]:
    """Patch the OS calls (and node/runtime.py's System) so ``fault`` numbers and fails them."""
    real = {name: getattr(os, name) for name in ("open", "write", "rename", "replace", "link", "unlink", "mkdir")}
    real_open = builtins.open

    def f_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and dir_fd is None and fault.check("open", path):
            raise fault.error(path)
        return real["open"](path, flags, mode, dir_fd=dir_fd)

    def f_write(fd: int, data: Any) -> int:
        if fault.active and fd > 2:
            path = _fd_path(fd)
            if fault.check("write", path):
                real["write"](fd, bytes(data)[: len(data) // 2])
                raise fault.error(path)
        return real["write"](fd, data)

    def two_path(name: str) -> Any:
        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("src_dir_fd") is None and fault.check(name, dst):
                raise fault.error(dst)
            return real[name](src, dst, *args, **kwargs)
        return call

    def one_path(name: str, kind: str) -> Any:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("dir_fd") is None and fault.check(kind, path):
                raise fault.error(path)
            return real[name](path, *args, **kwargs)
        return call

    def b_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        named = isinstance(file, (str, bytes, os.PathLike))
        writing = named and any(c in mode for c in _WRITE_MODES)
        if writing and fault.check("open", file):
            raise fault.error(file)
        if named and not writing and fault.reads and fault.check("read", file):
            raise fault.error(file)  # the file's bytes could not be read (EIO)
        f = real_open(file, mode, *args, **kwargs)
        return _FaultyFileObject(f, file, fault) if writing and fault._mine(file) else f

    patches = {"open": f_open, "write": f_write, "rename": two_path("rename"), "replace": two_path("replace"),
               "link": two_path("link"), "unlink": one_path("unlink", "unlink"), "mkdir": one_path("mkdir", "mkdir")}
    for name, fn in patches.items():
        setattr(os, name, fn)
    builtins.open = b_open
    io.open = b_open
    try:
        with use_system(_FaultySystem(fault)):
            yield fault
    finally:
        for name, fn in real.items():
            setattr(os, name, fn)
        builtins.open = real_open
        io.open = real_open
