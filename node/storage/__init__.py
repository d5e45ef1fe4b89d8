"""The node's storage engine: commit log, memtables, SSTables, compaction, snapshots.

Public API (see docs/storage.md): :class:`StorageEngine` (synchronous, thread-safe core; the node
offloads its blocking calls to worker threads and runs its background duties itself) and the
data model.
"""

from .cells import Cell, Mutation, Partition, RangeTombstone, reconcile
from .config import StorageConfig, TableOptions
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
    "StorageEngine", "StorageError", "InvalidMutation", "InvalidName", "UnknownTable",
    "CorruptSSTableError", "CommitLogError", "EngineClosed", "StorageFailure", "DiskFull", "CommitLogSyncFailed",
    "WritesStopped", "CommitLogCorrupt",
]
