"""Engine and per-table configuration (data, not scattered constants), with documented limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InvalidMutation

# Cassandra refuses partition keys over 64 KiB (their length is an unsigned short on disk); we keep
# the same bound so anything that worked there works here.
DEFAULT_MAX_KEY_BYTES = 64 * 1024
# Cassandra's hard limit for a value is 2 GiB and its native frame is 256 MiB, but it recommends
# values well under 1 MiB: a value is held whole in memory on every replica, in the memtable, in the
# commit log record and in read repair. 1 MiB keeps a full partition read within one frame.
# The node stores a client value as its msgpack packing, whose header adds up to 5 bytes
# (bin 32 / str 32); the slack lets a client value of exactly the protocol's 1 MiB through.
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024 + 5
# Column names share Cassandra's 64 KiB bound (also an unsigned short length there).
DEFAULT_MAX_COLUMN_NAME_BYTES = 64 * 1024
# Cassandra's names and order (conf/cassandra.yaml disk_failure_policy), most drastic first.
DISK_FAILURE_POLICIES = ("die", "stop_paranoid", "stop", "best_effort", "ignore")
# Cassandra caps TTLs at 20 years (630720000 s) so expiry times fit its 32-bit deletion times.
MAX_TTL_SECONDS = 630_720_000


@dataclass
class TableOptions:
    """Per-table options: column order, tombstone grace, bloom filter and compaction tuning."""

    column_order: str = "name"  # "name", or "time": newest first (the paper's inbox search)
    gc_grace_seconds: int = 864_000  # ten days, Cassandra's default
    bloom_fp_chance: float = 0.01
    compaction_min_threshold: int = 4
    compaction_max_threshold: int = 32
    compaction_bucket_low: float = 0.5
    compaction_bucket_high: float = 1.5
    # Cassandra's min_sstable_size: every SSTable below it lands in one bucket, so many tiny
    # flushes are compacted together instead of being compared by (noisy) size ratios.
    compaction_min_sstable_bytes: int = 50 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if self.column_order not in ("name", "time"):
            raise ValueError(f"column_order must be 'name' or 'time', got {self.column_order!r}")
        if self.gc_grace_seconds < 0:
            raise ValueError("gc_grace_seconds must be >= 0")
        if not 0.0 < self.bloom_fp_chance < 1.0:
            raise ValueError("bloom_fp_chance must be in (0, 1)")
        if not 2 <= self.compaction_min_threshold <= self.compaction_max_threshold:
            raise ValueError("need 2 <= compaction_min_threshold <= compaction_max_threshold")
        if not 0 < self.compaction_bucket_low <= 1 <= self.compaction_bucket_high:
            raise ValueError("need 0 < compaction_bucket_low <= 1 <= compaction_bucket_high")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableOptions:
        """Inverse of :meth:`to_dict`; unknown keys are kept in ``extra``."""
        known = {f for f in cls.__dataclass_fields__}
        opts = cls(**{k: v for k, v in d.items() if k in known})
        opts.extra = dict(opts.extra) | {k: v for k, v in d.items() if k not in known}
        return opts


@dataclass
class StorageConfig:
    """Engine-wide settings: commit log sync mode and sizes, flush threshold, limits."""

    commitlog_sync: str = "periodic"  # "periodic" | "batch" | "group"
    commitlog_sync_period_ms: int = 10_000  # Cassandra's periodic default
    # Cassandra's group window default is 15 ms: long enough to gather many writers, short enough
    # not to dominate the write latency.
    commitlog_group_window_ms: int = 15
    commitlog_segment_size_mb: int = 32  # Cassandra's default segment size
    commitlog_total_space_mb: int = 1024
    memtable_flush_threshold_mb: int = 64
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_column_name_bytes: int = DEFAULT_MAX_COLUMN_NAME_BYTES
    # Cassandra refuses a mutation larger than half a commit log segment; so do we (None = derive).
    max_mutation_bytes: int | None = None
    # The key cache (keycache.py): partition key -> record location, this many entries over every
    # SSTable of the node (0 turns it off); each SSTable also keeps up to 1/32 as many decoded
    # index blocks (of 32 entries each).
    key_cache_entries: int = 100_000
    # A table that refuses reads after a corrupt SSTable was quarantined is repaired from its
    # replicas and served again once held this many seconds (node/server.py; a scrub does it at
    # once); 0 = only a scrub repairs it.
    auto_repair_after_s: float = 30.0
    # Cassandra's commit_failure_policy: after a failed commit log fsync (or a write error other
    # than a full disk) "stop" refuses every later write and keeps serving reads, "die" ends the
    # process, "ignore" fails only the writes that fsync covered and carries on.
    commit_failure_policy: str = "stop"
    # Cassandra's disk_failure_policy, for the data disk (docs/storage.md): what an SSTable read
    # or write failing with an I/O error (not a full disk), or a corrupt SSTable, does to the node.
    # "stop" (Cassandra's default) stops client and internode traffic on an I/O error and keeps
    # the process up for inspection; "stop_paranoid" does so for a corrupt SSTable too; "die" ends
    # the process; "best_effort" takes the failed SSTable out of the live set and serves the
    # table's other keys; "ignore" fails the requests that met it and carries on.
    disk_failure_policy: str = "stop"
    # Damage in the commit log followed by valid records: "stop" refuses to start (naming the
    # file and offset), "skip_corrupt" replays around it and logs every byte range lost.
    commitlog_replay: str = "stop"
    # Finer sizes for test campaigns (0 = use the MB settings above): a campaign writes tens of
    # KB per node, mostly overwrites that do not grow a memtable, so only KB-sized memtables,
    # segments and commit log space make it flush (the commit log space bound flushes the
    # oldest tables, as Cassandra's does), compact and recycle segments. The mutation limit stays
    # derived from the MB segment size (an oversized record simply gets a segment of its own).
    memtable_flush_threshold_kb: int = 0
    commitlog_segment_size_kb: int = 0
    commitlog_total_space_kb: int = 0
    # Memtables a failing data disk keeps from flushing stay in memory; past this many KB (0: four
    # flush thresholds, at least 32 MB) a table refuses writes with DiskFull until a flush succeeds.
    memtable_backlog_kb: int = 0
    # Keep commit log bytes written since the last fsync in process memory (node/storage/files.py),
    # so a SIGKILL loses them as a power loss would; for crash tests only.
    volatile_unsynced: bool = False
    # Wrap that door so the disk nemesis can make its writes and fsyncs fail (ENOSPC, EIO);
    # for fault tests only.
    disk_faults: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.commitlog_sync not in ("periodic", "batch", "group"):
            raise ValueError(f"commitlog_sync must be periodic, batch or group, got {self.commitlog_sync!r}")
        if self.commit_failure_policy not in ("stop", "die", "ignore"):
            raise ValueError(f"commit_failure_policy must be stop, die or ignore, got {self.commit_failure_policy!r}")
        if self.disk_failure_policy not in DISK_FAILURE_POLICIES:
            raise ValueError(f"disk_failure_policy must be one of {', '.join(DISK_FAILURE_POLICIES)}, "
                             f"got {self.disk_failure_policy!r}")
        if self.commitlog_replay not in ("stop", "skip_corrupt"):
            raise ValueError(f"commitlog_replay must be stop or skip_corrupt, got {self.commitlog_replay!r}")
        for name in ("commitlog_sync_period_ms", "commitlog_group_window_ms", "commitlog_segment_size_mb",
                     "commitlog_total_space_mb", "memtable_flush_threshold_mb", "max_key_bytes",
                     "max_value_bytes", "max_column_name_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("memtable_flush_threshold_kb", "commitlog_segment_size_kb", "commitlog_total_space_kb",
                     "memtable_backlog_kb"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = the default)")

    @property
    def flush_threshold_bytes(self) -> int:
        """Memtable size that triggers a flush."""
        if self.memtable_flush_threshold_kb:
            return self.memtable_flush_threshold_kb * 1024
        return self.memtable_flush_threshold_mb * 1024 * 1024

    @property
    def memtable_backlog_bytes(self) -> int:
        """Bytes a table's unflushed memtables may hold while flushes fail before writes are refused."""
        if self.memtable_backlog_kb:
            return self.memtable_backlog_kb * 1024
        return max(4 * self.flush_threshold_bytes, 32 * 1024 * 1024)

    @property
    def total_space_bytes(self) -> int:
        """Commit log size past which the oldest dirty tables are flushed."""
        if self.commitlog_total_space_kb:
            return self.commitlog_total_space_kb * 1024
        return self.commitlog_total_space_mb * 1024 * 1024

    @property
    def segment_bytes(self) -> int:
        """Commit log segment size."""
        if self.commitlog_segment_size_kb:
            return self.commitlog_segment_size_kb * 1024
        return self.commitlog_segment_size_mb * 1024 * 1024

    @property
    def mutation_limit(self) -> int:
        """The largest encoded mutation accepted, in bytes."""
        if self.max_mutation_bytes is not None:
            return self.max_mutation_bytes
        return self.commitlog_segment_size_mb * 1024 * 1024 // 2


def check_ttl(ttl: int | None) -> None:
    """Raise :class:`InvalidMutation` for a TTL outside 1..MAX_TTL_SECONDS."""
    if ttl is not None and (not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL_SECONDS):
        raise InvalidMutation(f"ttl must be an int in 1..{MAX_TTL_SECONDS} seconds, got {ttl!r}")
