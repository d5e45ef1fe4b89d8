"""The node's storage engine: commit log, memtables, SSTables, compaction, snapshots.

Public API (see docs/storage.md): :class:`StorageEngine` (synchronous, thread-safe core),
:class:`AsyncStorageEngine` (a Trio facade with background sync, flush and compaction tasks, which
the crash test's writer program runs; the node offloads to the engine itself), and the data model.
"""

from .cells import Cell, Mutation, Partition, RangeTombstone, reconcile
from .config import StorageConfig, TableOptions
from .async_engine import AsyncStorageEngine
from .engine import StorageEngine
from .errors import (
    CommitLogCorrupt,
    CommitLogError,
    CommitLogSyncFailed,
    CorruptSSTableError,
    DiskFull,
    StorageFailure,
    WritesStopped,
    EngineClosed,
    InvalidMutation,
    InvalidName,
    StorageError,
    UnknownTable,
)

__all__ = [
    "Cell", "Mutation", "Partition", "RangeTombstone", "reconcile", "StorageConfig", "TableOptions",
    "StorageEngine", "AsyncStorageEngine", "StorageError", "InvalidMutation", "InvalidName", "UnknownTable",
    "CorruptSSTableError", "CommitLogError", "EngineClosed", "StorageFailure", "DiskFull", "CommitLogSyncFailed",
    "WritesStopped", "CommitLogCorrupt",
]
