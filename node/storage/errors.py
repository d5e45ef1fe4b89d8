"""Errors raised by the storage engine; each is a named value the node maps to a client error."""

from __future__ import annotations

import errno
from pathlib import Path


class StorageError(Exception):
    """Base class of every error the storage engine raises on purpose."""


class InvalidMutation(StorageError):
    """A mutation breaks a documented limit or is malformed (the node answers InvalidRequest)."""


class InvalidName(StorageError):
    """A keyspace, table or snapshot name is not allowed."""


class UnknownTable(StorageError):
    """The keyspace/table does not exist on this node."""


class CorruptSSTableError(StorageError):
    """An SSTable component failed its checksum; the table is not served from that file."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"corrupt SSTable {path}: {detail}")
        self.path = path
        self.detail = detail


class CommitLogError(StorageError):
    """The commit log cannot be written (disk full, closed engine)."""


class StorageFailure(CommitLogError):
    """The disk failed a write the node needed (the node answers WriteFailure, never a timeout).

    Distinct from a refusal (:class:`InvalidMutation`): the request was fine, the disk was not.
    ``path`` names the file or directory that failed.
    """

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{detail} ({path})")
        self.path = path
        self.detail = detail


class DiskFull(StorageFailure):
    """A write failed with ENOSPC (or EDQUOT); nothing of it was kept. Retrying later may work."""


class CommitLogSyncFailed(StorageFailure):
    """An fsync of the commit log failed: every record it covered must be treated as lost.

    PostgreSQL's "fsyncgate" (2018): after a failed fsync the kernel may have dropped the dirty
    pages, so a later successful fsync proves nothing about them. No write waiting on it is
    acknowledged.
    """


class WritesStopped(StorageFailure):
    """``commit_failure_policy = stop``: after a commit log failure this node takes no writes."""


class CommitLogCorrupt(StorageError):
    """Replay found damage followed by valid records (not a torn tail); the node does not start."""

    def __init__(self, path: str, offset: int, detail: str) -> None:
        super().__init__(f"commit log {path} is corrupt at byte offset {offset}: {detail}; valid records "
                         f"follow, so truncating would drop acknowledged writes (set "
                         f"commitlog_replay = \"skip_corrupt\" to start anyway, logging every record lost)")
        self.path = path
        self.offset = offset
        self.detail = detail


class EngineClosed(StorageError):
    """The engine was used before open() or after close()."""


class AwaitingRepair(StorageError):
    """A table whose corrupt SSTables were quarantined refuses reads until a repair refilled it."""


def disk_error(exc: OSError, where: Path | str, what: str) -> StorageFailure:
    """A named storage failure for an OSError (DiskFull for ENOSPC/EDQUOT: nothing was kept and
    space may come back), naming the file that failed (or ``where``)."""
    path = str(exc.filename or where)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(path, f"{what} failed: {exc.strerror}")
    return StorageFailure(path, f"{what} failed: {exc.strerror or exc}")
