"""Errors raised by the storage engine; each is a named value the node maps to a client error."""

from __future__ import annotations


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


class EngineClosed(StorageError):
    """The engine was used before open() or after close()."""
