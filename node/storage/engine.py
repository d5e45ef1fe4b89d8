"""The storage engine: tables of partitions on a commit log, memtables and SSTables.

Synchronous and thread-safe: ``apply``/``read``/``scan`` may run from many threads while one
thread flushes and another compacts. One write lock makes "append to the commit log, then apply to
the memtable" atomic with respect to a memtable switch, so the commit log position recorded at a
switch splits the table's records exactly between the flushed memtable and the new one.

Layout under ``data_dir``::

    schema.json                        tables with their ids and options (atomically replaced)
    commitlog/CommitLog-<id>.log       commit log segments
    data/<keyspace>/<table>-<id>/      SSTable components (see sstable.py)
    snapshots/<tag>/<keyspace>/<table>/ hard links to the SSTables live at snapshot time
    corrupt/                           SSTables moved aside by discard_corrupt()
"""

from __future__ import annotations

import bisect
import errno
import heapq
# io.open rather than the builtin: looked up at each call in the compiled build too, so the
# tests' file-fault shim (tests/unit/nth_fault.py) sees these files opened.
import io
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from ..durable import write_atomic
from ..runtime import Clock, fsync
from .cells import Cell, Mutation, Partition, RangeTombstone, cell_sort_key
from .commitlog import CommitLog
from .compaction import choose_compaction, compacted_partitions
from .config import MAX_TTL_SECONDS, StorageConfig, TableOptions
from .errors import (
    AwaitingRepair,
    CorruptSSTableError,
    DiskFull,
    EngineClosed,
    InvalidMutation,
    InvalidName,
    StorageError,
    StorageFailure,
    UnknownTable,
    WritesStopped,
    disk_error,
)
from .files import FileOps, disk_fault, file_ops
from .keycache import KeyCache
from .memtable import Memtable
from .sstable import (
    COMPONENTS,
    DIGEST,
    TOC,
    SSTableReader,
    SSTableWriter,
    component_path,
    fsync_dir,
    remove_generation,
    restore_lost_toc,
    restamp,
)

log = logging.getLogger("ringlab.storage")

# Tables that refuse reads until repaired (a quarantine, a scrub): kept across restarts.
HELD_FILE = "held.json"

# Cassandra's rule for keyspace and table names: word characters, at most 48 of them (they become
# directory names, and 48 keeps paths well under filesystem limits).
_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,48}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_GEN_RE = re.compile(r"^(\d+)-")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# A disk failing SSTable reads fails every read that reaches one: one log line per this many
# seconds says so without a line per request.
_READ_ERROR_LOG_EVERY_S = 1.0
_SCHEMA_VERSION = 1
# Where SSTables streamed whole are received before their atomic import (node/rangecopy.py).
INCOMING_DIR = "incoming"


def _identity(key: bytes) -> bytes:
    return key


@dataclass(frozen=True)
class _Ghost:
    """An SSTable best_effort took out of the live set, and why. ``on_disk``: the file was not
    moved (a read error, the file itself may be intact): it is loaded again at the next start, so
    compaction keeps honouring it and a repair does not release it; a corrupt one was moved to
    ``corrupt/``, and a repair that refilled the table releases it."""

    reader: Any
    why: str
    on_disk: bool


# The statistics of an SSTable that its data determines (``sstable_metadata``): what a scan of
# the data file can count again.
SSTABLE_METADATA_FIELDS = ("partitions", "cells", "tombstones", "min_timestamp", "max_timestamp",
                           "max_local_deletion_time", "first_key", "last_key")


@dataclass
class _Table:
    id: int
    keyspace: str
    name: str
    options: TableOptions
    directory: Path
    memtable: Memtable
    flushing: list[Memtable] = field(default_factory=list)
    sstables: list[SSTableReader] = field(default_factory=list)  # newest first, copy-on-write
    compacting: set[int] = field(default_factory=set)
    next_generation: int = 1
    flush_lock: threading.Lock = field(default_factory=threading.Lock)
    # (sstables list, the same readers newest data first): the time-ordered read's order, worked
    # out again only when the list is replaced (it is copy-on-write), one attribute so a racing
    # reader sees a matching pair.
    read_order: tuple[Any, list[SSTableReader]] = (None, [])
    # disk_failure_policy = best_effort: SSTables taken out of the live set (copy-on-write); a
    # read of a key one of them may hold is refused, the table's other keys are served.
    ghosts: list[_Ghost] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.keyspace}.{self.name}"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated mutation and its commit log record payload (:meth:`StorageEngine.prepare`)."""

    table: _Table
    mutation: Mutation
    payload: bytes
    # mutation.to_obj(), the record's second element (callers must not change it)
    obj: Any
    # its msgpack bytes, the record payload's tail: what a coordinator sends its replicas as is
    obj_bytes: bytes


def _exactly(value: Any, cls: type) -> bool:
    """``type(value) is cls``, which a type checker does not take to narrow ``value``: the checks
    below read the fields of values not yet checked, and those reads must stay Any (compiled, a
    read typed by the field's annotation checks it first: a str value raised TypeError, a bool
    timestamp came back an int, before the checks could name them)."""
    return type(value) is cls


def _instance(value: Any, cls: type) -> bool:
    """``isinstance(value, cls)``, not narrowing ``value`` either (see _exactly)."""
    return isinstance(value, cls)


def _plainly_valid(m: Any, cfg: StorageConfig) -> bool:
    """Whether :meth:`StorageEngine.validate` would return ``m`` as it is: the common write, live
    cells without a TTL, checked in one tight pass. Every write is validated on its coordinator and
    each replica, and the field-by-field checks were the storage side's largest Python share;
    False (anything else, or any doubt) sends ``m`` through them, which name the problem and fill
    in deletion times (tests/unit/test_plain_mutations.py holds both to the same answers).
    ``m`` is Any: the caller's value, of any type until checked here (see _exactly)."""
    if not _exactly(m, Mutation) or m.partition_tombstone is not None or m.range_tombstones or not m.cells:
        return False
    key = m.key
    if type(key) is not bytes or not 0 < len(key) <= cfg.max_key_bytes:
        return False
    max_value, max_chars = cfg.max_value_bytes, cfg.max_column_name_bytes // 4
    for c in m.cells:
        if not _exactly(c, Cell) or c.ttl is not None or c.local_deletion_time is not None:
            return False
        name, value, ts = c.name, c.value, c.timestamp
        if (type(name) is not str or not 0 < len(name) <= max_chars or "\x00" in name
                or type(value) is not bytes or len(value) > max_value
                or type(ts) is not int or not _INT64_MIN <= ts <= _INT64_MAX):
            return False
    return True


class StorageEngine:
    """Commit log + memtables + SSTables for every table of one node."""

    def __init__(self, data_dir: Path, config: StorageConfig, clock: Clock,
                 sort_key: Callable[[bytes], Any] | None = None,
                 on_fatal: Callable[[StorageError], None] | None = None, files: FileOps | None = None,
                 on_disk_failure: Callable[[StorageError], None] | None = None) -> None:
        config.validate()
        self.data_dir = Path(data_dir)
        # The commit log's file door (a simulated disk passes its own).
        self.files: FileOps = files or file_ops(config.volatile_unsynced, config.disk_faults)
        # The disk nemesis's switch, which SSTable writers and readers consult too (or None).
        self._fault = disk_fault(self.files)
        self._read_error_logged: float | None = None  # monotonic time of the last read-error line
        self.config = config
        self.clock = clock
        self.sort_key: Callable[[bytes], Any] = sort_key or _identity
        self._lock = threading.RLock()  # the write lock (see module docstring)
        self._schema_lock = threading.Lock()
        self._tables: dict[tuple[str, str], _Table] = {}
        self._next_id = 1
        self._commitlog: CommitLog | None = None
        self._opened = False
        self._local = threading.local()
        # commit_failure_policy "die": called (from whichever thread saw the failure) to end the
        # process; the node passes one that logs and exits. "stop": _stopped refuses writes.
        self._on_fatal = on_fatal
        self._stopped: StorageFailure | None = None
        # disk_failure_policy stop/stop_paranoid: called once (from whichever thread met it) with
        # the data-disk failure that stops the node's traffic; _disk_failure keeps it for status.
        self._on_disk_failure = on_disk_failure
        self._disk_failure: StorageError | None = None
        self._quarantined: list[str] = []  # data files moved to corrupt/ after failing a read
        # Tables whose corrupt SSTables an operator's scrub quarantined: what they lost is not back
        # until a repair, so their reads are refused meanwhile (node/storage_admin.py).
        self._held: dict[tuple[str, str], str] = {}
        # Sort keys at which flushes and compactions cut their output (the node's ring tokens), so
        # one SSTable never spans two token ranges that can move separately (docs/storage.md).
        # Replaced whole (a tuple), so a worker thread reads either the old or the new one.
        self._split_points: tuple[Any, ...] = ()
        # Partition key -> record location per live SSTable (keycache.py), bounded over all tables.
        self._key_cache = KeyCache(config.key_cache_entries)

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        """Load the schema and SSTables, replay the commit log, start a new segment.

        A disk error (a full disk, say) raises :class:`StorageFailure` naming the path; a commit
        log damaged before valid records raises :class:`CommitLogCorrupt`.
        """
        try:
            self._open()
        except OSError as exc:
            path = exc.filename or self.data_dir
            cls = DiskFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else StorageFailure
            raise cls(str(path), f"cannot open storage: {exc.strerror or exc}") from exc
        except StorageFailure as exc:  # the new commit log segment was refused
            raise type(exc)(exc.path, f"cannot open storage: {exc.detail}") from exc

    def _open(self) -> None:
        for sub in ("data", "commitlog", "snapshots"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        # SSTables received whole but not yet imported: never visible, so a restart drops them.
        shutil.rmtree(self.data_dir / INCOMING_DIR, ignore_errors=True)
        self._load_schema()
        for t in self._tables.values():
            self._load_sstables(t)
        self._remove_orphan_table_dirs()
        self._load_held()
        cfg = self.config
        cl = CommitLog(self.data_dir / "commitlog", sync_mode=cfg.commitlog_sync,
                       segment_bytes=cfg.segment_bytes,
                       group_window_s=cfg.commitlog_group_window_ms / 1000, clock=self.clock,
                       replay_policy=cfg.commitlog_replay,
                       sticky_failure=cfg.commit_failure_policy != "ignore", files=self.files)
        by_id = {t.id: t for t in self._tables.values()}
        replay_from = {t.id: max((r.stats.get("replay_position", 0) for r in t.sstables if r.corrupt is None),
                                 default=0) for t in by_id.values()}
        for tid, pos in replay_from.items():
            cl.mark_flushed(tid, pos)
        replayed = 0
        for pos, tid, obj in cl.replay():
            table = by_id.get(tid)
            if table is None or pos <= replay_from[tid]:
                continue
            table.memtable.apply(Mutation.from_obj(obj))
            replayed += 1
        cl.report.applied = replayed
        cl.start()
        self._commitlog = cl
        self._opened = True
        cl.discard_clean(set(by_id))
        log.info("storage opened at %s: %d tables, %d commit log records replayed, %d truncations",
                 self.data_dir, len(self._tables), replayed, len(cl.report.truncations))

    @property
    def replay_report(self) -> Any:
        """What the last commit log replay found (records, truncations with byte offsets)."""
        return self._cl().report

    def close(self) -> None:
        """fsync the commit log and release files (memtables stay in the commit log for replay)."""
        if not self._opened:
            return
        self._opened = False
        self._cl().close()
        for t in self._tables.values():
            for r in [*t.sstables, *(g.reader for g in t.ghosts)]:
                r.close()

    def __enter__(self) -> StorageEngine:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cl(self) -> CommitLog:
        if self._commitlog is None:
            raise EngineClosed("storage engine is not open")
        return self._commitlog

    def now_s(self) -> int:
        """The node's wall clock in whole seconds (deletion and expiry times use it)."""
        return self.clock.wall_us() // 1_000_000

    # -- schema ---------------------------------------------------------------------------------

    def _schema_path(self) -> Path:
        return self.data_dir / "schema.json"

    def _load_schema(self) -> None:
        path = self._schema_path()
        if not path.exists():
            return
        doc = json.loads(path.read_text())
        self._next_id = doc["next_id"]
        for entry in doc["tables"]:
            opts = TableOptions.from_dict(entry["options"])
            self._tables[(entry["keyspace"], entry["table"])] = self._new_table(
                entry["id"], entry["keyspace"], entry["table"], opts)

    def _save_schema(self) -> None:
        doc = {
            "version": _SCHEMA_VERSION,
            "next_id": self._next_id,
            "tables": [{"id": t.id, "keyspace": t.keyspace, "table": t.name, "options": t.options.to_dict()}
                       for t in self._tables.values()],
        }
        tmp = self._schema_path().with_suffix(".json.tmp")
        try:
            with io.open(tmp, "w") as f:
                f.write(json.dumps(doc, indent=1, sort_keys=True))  # one write, not one per token
                f.flush()
                fsync(f.fileno())
            os.replace(tmp, self._schema_path())
        except OSError as exc:
            raise disk_error(exc, self._schema_path(), "schema write") from exc  # the old schema stands
        try:
            fsync_dir(self.data_dir)
        except OSError as exc:
            # The new schema is in place (a restart reads it), so the change stands; the caller is
            # told that its durability is not known.
            log.error("schema.json replaced but its directory fsync failed: %s", exc)
            raise _SchemaReplaced(str(self.data_dir), f"schema written, directory fsync failed: "
                                  f"{exc.strerror or exc}") from exc

    def _new_table(self, tid: int, keyspace: str, name: str, opts: TableOptions) -> _Table:
        directory = self.data_dir / "data" / keyspace / f"{name}-{tid}"
        directory.mkdir(parents=True, exist_ok=True)
        return _Table(tid, keyspace, name, opts, directory, Memtable(self.sort_key))

    def _load_sstables(self, t: _Table) -> None:
        gens: set[int] = set()
        for p in t.directory.iterdir():
            m = _GEN_RE.match(p.name)
            if m:
                gens.add(int(m.group(1)))
        obsolete = _remove_obsolete(t.directory)
        if obsolete:
            t.next_generation = max(t.next_generation, max(obsolete) + 1)
        readers = []
        for gen in sorted(gens - obsolete):
            t.next_generation = max(t.next_generation, gen + 1)
            if not (t.directory / f"{gen}-{TOC}").exists() and restore_lost_toc(t.directory, gen):
                log.error("SSTable generation %d in %s had no %s but every component matches its digest: "
                          "a finished SSTable whose TOC was lost (deleted or damaged), not an unfinished "
                          "write; TOC rewritten and the SSTable loaded", gen, t.directory, TOC)
            if not (t.directory / f"{gen}-{TOC}").exists():
                # No TOC: a flush or compaction died mid-write; its parts were never visible.
                log.info("removing unfinished SSTable generation %d in %s", gen, t.directory)
                try:
                    remove_generation(t.directory, gen)
                except OSError as exc:
                    # Without a TOC it is never loaded, so the node starts all the same; the
                    # next start tries again (later generations are numbered past it).
                    log.error("cannot remove unfinished SSTable generation %d in %s: %s", gen, t.directory, exc)
                continue
            readers.append(self._open_reader(t, gen))
        t.sstables = sorted(readers, key=lambda r: -r.generation)

    def _open_reader(self, t: _Table, gen: int) -> SSTableReader:
        try:
            return SSTableReader(t.directory, gen, self.sort_key, self._block_cache_entries(), self._fault,
                                 self._key_cache)
        except CorruptSSTableError as exc:
            err = exc
        except FileNotFoundError as exc:
            # A component its TOC lists is gone: damage like a failed checksum, not a reason for
            # the node not to start.
            err = CorruptSSTableError(str(exc.filename), "component missing")
        log.error("%s; table %s will refuse reads until it is discarded", err, t.qualified)
        self._disk_failed(t, err)  # die: the node does not start; stop_paranoid: it starts stopped
        return _CorruptSSTable(t.directory, gen, err)  # type: ignore[return-value]

    def _block_cache_entries(self) -> int:
        return max(16, self.config.key_cache_entries // 32)

    def _remove_orphan_table_dirs(self) -> None:
        known = {t.directory for t in self._tables.values()}
        for ks_dir in (self.data_dir / "data").iterdir():
            for tdir in ks_dir.iterdir():
                if tdir not in known:
                    log.info("removing data of dropped table %s", tdir)
                    shutil.rmtree(tdir, ignore_errors=True)

    def create_table(self, keyspace: str, table: str, options: TableOptions | None = None) -> None:
        """Create a table (or update the options of an existing one)."""
        for what, name in (("keyspace", keyspace), ("table", table)):
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise InvalidName(f"{what} name {name!r} must be 1-48 letters, digits or underscores")
        options = options or TableOptions()
        try:
            options.validate()
        except ValueError as exc:
            raise InvalidName(f"bad options for {keyspace}.{table}: {exc}") from exc
        with self._schema_lock, self._lock:
            t = self._tables.get((keyspace, table))
            old_options, old_next = (t.options if t is not None else None), self._next_id
            try:
                if t is not None:
                    t.options = options
                else:
                    tid = self._next_id
                    self._next_id += 1
                    self._tables[(keyspace, table)] = self._new_table(tid, keyspace, table, options)
                self._save_schema()
            except _SchemaReplaced:
                raise
            except (OSError, StorageFailure) as exc:
                # Undo in memory what the disk refused: a table missing from schema.json would
                # take writes that a restart then skips in the commit log (they would be lost).
                if t is not None:
                    t.options = old_options  # type: ignore[assignment]
                else:
                    self._tables.pop((keyspace, table), None)
                    self._next_id = old_next
                if isinstance(exc, OSError):
                    raise disk_error(exc, self.data_dir, f"create table {keyspace}.{table}") from exc
                raise

    def drop_table(self, keyspace: str, table: str) -> None:
        """Drop a table and delete its data (its commit log records are ignored from now on)."""
        with self._schema_lock:
            with self._lock:
                t = self._table(keyspace, table)
                del self._tables[(keyspace, table)]
                try:
                    self._save_schema()
                except _SchemaReplaced:
                    raise  # dropped on disk too: the table's files stay until the next start removes them
                except StorageFailure:
                    self._tables[(keyspace, table)] = t  # the disk refused it: not dropped
                    raise
            for r in t.sstables:
                r.close()
            shutil.rmtree(t.directory, ignore_errors=True)
        if self._commitlog is not None:
            self._discard_segments()

    def tables(self) -> dict[tuple[str, str], TableOptions]:
        """Every table with its options."""
        with self._lock:
            return {k: t.options for k, t in self._tables.items()}

    def table_options(self, keyspace: str, table: str) -> TableOptions:
        """The options of one table (raises :class:`UnknownTable`)."""
        return self._table(keyspace, table).options

    def _table(self, keyspace: str, table: str) -> _Table:
        t = self._tables.get((keyspace, table))
        if t is None:
            raise UnknownTable(f"unknown table {keyspace}.{table}")
        return t

    # -- writes ---------------------------------------------------------------------------------

    def validate(self, m: Any, now_s: int | None = None) -> Mutation:
        """Check limits and types; fill missing deletion/expiry times. Raises :class:`InvalidMutation`.
        ``m`` is Any until checked (see _plainly_valid)."""
        cfg = self.config
        if _plainly_valid(m, cfg):
            return m
        return self._validate_all(m, now_s)

    def _validate_all(self, m: Any, now_s: int | None = None) -> Mutation:
        """:meth:`validate` field by field (the errors name what is wrong)."""
        cfg = self.config
        if not _instance(m, Mutation):
            raise InvalidMutation(f"expected a Mutation, got {type(m).__name__}")
        key = m.key
        if not isinstance(key, bytes):
            raise InvalidMutation(f"partition key must be bytes, got {type(key).__name__}")
        if not key:
            raise InvalidMutation("partition key must not be empty")
        if len(key) > cfg.max_key_bytes:
            raise InvalidMutation(f"partition key is {len(key)} bytes; the limit is {cfg.max_key_bytes}")
        if not m.cells and m.partition_tombstone is None and not m.range_tombstones:
            raise InvalidMutation("empty mutation: no cells and no deletions")
        now = now_s  # read the clock only if a deletion or expiry time must be filled in
        changed = False
        cells = []
        max_value, max_name = cfg.max_value_bytes, cfg.max_column_name_bytes
        for c in m.cells:
            if not _exactly(c, Cell):
                raise InvalidMutation(f"expected Cell, got {type(c).__name__}")
            name, value, ts, ttl = c.name, c.value, c.timestamp, c.ttl
            if not isinstance(name, str) or not name or "\x00" in name:
                raise InvalidMutation(f"column name must be a non-empty str without NUL, got {name!r}")
            if len(name) * 4 > max_name and len(name.encode()) > max_name:
                raise InvalidMutation(f"column name is over {max_name} bytes")
            if value is not None:
                if type(value) is not bytes:
                    raise InvalidMutation(f"value of column {name!r} must be bytes or None")
                if len(value) > max_value:
                    raise InvalidMutation(f"value of column {name!r} is {len(value)} bytes; the limit is {max_value}")
            if type(ts) is not int or not _INT64_MIN <= ts <= _INT64_MAX:
                raise InvalidMutation(f"timestamp of column {name!r} must be a 64-bit int, got {ts!r}")
            if ttl is not None:
                if value is None:
                    raise InvalidMutation(f"tombstone for column {name!r} cannot have a ttl")
                if type(ttl) is not int or not 0 < ttl <= MAX_TTL_SECONDS:
                    raise InvalidMutation(f"ttl of column {name!r} must be 1..{MAX_TTL_SECONDS} s, got {ttl!r}")
                if c.local_deletion_time is None:
                    now = self.now_s() if now is None else now
                    c = Cell(name, value, ts, ttl, now + ttl)
                    changed = True
            elif value is None and c.local_deletion_time is None:
                now = self.now_s() if now is None else now
                c = Cell(name, None, ts, None, now)
                changed = True
            elif value is not None and c.local_deletion_time is not None:
                raise InvalidMutation(f"column {name!r}: a live cell without ttl has no deletion time")
            cells.append(c)
        pt, pdt = m.partition_tombstone, m.partition_deletion_time
        if pt is not None:
            if type(pt) is not int or not _INT64_MIN <= pt <= _INT64_MAX:
                raise InvalidMutation(f"partition tombstone must be a 64-bit int, got {pt!r}")
            if pdt is None:
                pdt = now = self.now_s() if now is None else now
                changed = True
        rts = []
        for rt in m.range_tombstones:
            if not _exactly(rt, RangeTombstone) or not isinstance(rt.prefix, str) or not rt.prefix:
                raise InvalidMutation(f"bad range tombstone {rt!r}")
            if type(rt.timestamp) is not int or not _INT64_MIN <= rt.timestamp <= _INT64_MAX:
                raise InvalidMutation(f"range tombstone timestamp must be a 64-bit int, got {rt.timestamp!r}")
            if rt.local_deletion_time is None:
                now = self.now_s() if now is None else now
                rt = RangeTombstone(rt.prefix, rt.timestamp, now)
                changed = True
            rts.append(rt)
        if not changed:
            return m
        return Mutation(key, cells, pt, pdt, rts)

    def prepare(self, keyspace: str, table: str, mutation: Mutation, now_s: int | None = None) -> Prepared:
        """Validate and encode a mutation for :meth:`apply` (InvalidMutation as apply would raise it).

        A coordinator checks a write before sending it anywhere and then applies it locally: the
        check's validation and encoding, done once, serve the apply.
        """
        t = self._table(keyspace, table)
        m = self.validate(mutation, now_s)
        packer = self._packer()
        obj = m.to_obj()
        return self._prepared(t, m, obj, packer.pack(obj), packer)

    def prepare_encoded(self, keyspace: str, table: str, obj_bytes: bytes) -> Prepared:
        """:meth:`prepare` for a mutation that arrives as the msgpack bytes of its ``to_obj()`` (a
        coordinator's replica request): decoded and validated here, and the bytes themselves
        become the record when validation changes nothing (no re-encoding per replica write)."""
        t = self._table(keyspace, table)
        try:
            obj = msgpack.unpackb(obj_bytes, raw=False, strict_map_key=False)
            mutation = Mutation.from_obj(obj)
        except Exception as exc:  # msgpack's errors, or a map of the wrong shape
            raise InvalidMutation(f"undecodable mutation: {type(exc).__name__}: {exc}") from exc
        m = self.validate(mutation)
        packer = self._packer()
        if m is not mutation:
            obj = m.to_obj()
            obj_bytes = packer.pack(obj)
        return self._prepared(t, m, obj, bytes(obj_bytes), packer)

    def _packer(self) -> msgpack.Packer:
        packer = getattr(self._local, "packer", None)
        if packer is None:
            # msgpack.packb builds a Packer per call; one per thread (they are not thread-safe).
            packer = self._local.packer = msgpack.Packer(use_bin_type=True)
        return packer

    def _prepared(self, t: _Table, m: Mutation, obj: Any, obj_bytes: bytes, packer: msgpack.Packer) -> Prepared:
        # The record is msgpack [table id, mutation]: a 2-array header, the id, the mutation's bytes.
        payload = b"".join((b"\x92", packer.pack(t.id), obj_bytes))
        if len(payload) > self.config.mutation_limit:
            raise InvalidMutation(f"mutation is {len(payload)} bytes encoded; the limit is {self.config.mutation_limit}")
        return Prepared(t, m, payload, obj, obj_bytes)

    def apply(self, keyspace: str, table: str, mutation: Mutation, now_s: int | None = None,
              prepared: Prepared | None = None) -> int:
        """Validate, append to the commit log and apply to the memtable; returns the log position.

        ``prepared``: :meth:`prepare`'s result for this very mutation (then it is not redone).
        """
        if prepared is None:
            prepared = self.prepare(keyspace, table, mutation, now_s)
        t, m, payload = prepared.table, prepared.mutation, prepared.payload
        cl = self._cl()
        if self._stopped is not None:
            raise WritesStopped(self._stopped.path, f"writes stopped after a commit log failure "
                                f"(commit_failure_policy = stop): {self._stopped.detail}")
        with self._lock:
            if self._tables.get((keyspace, table)) is not t:
                raise UnknownTable(f"unknown table {keyspace}.{table}")
            if t.flushing:
                backlog = self._backlog(t)
                if backlog is not None:
                    raise backlog
            try:
                pos = cl.append_payload(t.id, payload)
            except DiskFull:
                raise  # nothing was kept and space may come back: refuse this write only
            except StorageFailure as exc:
                self._commit_failed(exc)
                raise
            t.memtable.apply(m)
        return pos

    def _backlog(self, t: _Table) -> DiskFull | None:
        """DiskFull when the memtables of ``t`` that failed to flush (a failing data disk) and its
        live one hold more than the backlog limit: further writes are refused, as Cassandra blocks
        writes when memtable space runs out, rather than growing memory until the process dies."""
        held = t.memtable.bytes + sum(m.bytes for m in t.flushing)
        limit = self.config.memtable_backlog_bytes
        if held <= limit:
            return None
        return DiskFull(str(t.directory), f"{len(t.flushing)} memtables of {t.qualified} wait for a flush the data "
                        f"disk refused ({held} bytes in memory, the limit is {limit}); writes are refused until "
                        "a flush succeeds")

    def apply_prepared(self, batch: list[Prepared]) -> list[int | StorageError]:
        """:meth:`apply` of several prepared mutations with one commit log write: each gets its
        log position, or the error that refused it (a failed write refuses it and all after it).
        Each mutation reaches its memtable only once its record was handed to the OS, as in apply."""
        cl = self._cl()
        if self._stopped is not None:
            stopped = WritesStopped(self._stopped.path, f"writes stopped after a commit log failure "
                                    f"(commit_failure_policy = stop): {self._stopped.detail}")
            return [stopped] * len(batch)
        # Any: a slot holds 0 until its position (or the error that refused it) is known.
        out: list[Any] = []
        with self._lock:
            tables = self._tables
            live = []
            for p in batch:
                t = p.table
                if tables.get((t.keyspace, t.name)) is not t:
                    out.append(UnknownTable(f"unknown table {t.keyspace}.{t.name}"))
                elif t.flushing and (backlog := self._backlog(t)) is not None:
                    out.append(backlog)
                else:
                    live.append(p)
                    out.append(0)  # its position, below
            positions, error = cl.append_payloads([(p.table.id, p.payload) for p in live])
            for p, pos in zip(live, positions):
                p.table.memtable.apply(p.mutation)
            if error is not None and not isinstance(error, DiskFull):
                self._commit_failed(error)
        it = iter(positions)
        for i, slot in enumerate(out):
            if slot == 0:
                got = next(it, None)
                out[i] = got if got is not None else error
        return out

    def check_mutation(self, keyspace: str, table: str, mutation: Mutation) -> None:
        """Raise :class:`InvalidMutation` if :meth:`apply` would refuse ``mutation`` (no I/O)."""
        m = self.validate(mutation)
        size = len(msgpack.packb([0, m.to_obj()], use_bin_type=True))
        if size > self.config.mutation_limit:
            raise InvalidMutation(f"mutation is {size} bytes encoded; the limit is {self.config.mutation_limit}")

    def write_failure(self) -> StorageFailure | None:
        """Why this engine refuses writes (commit_failure_policy = stop), or None."""
        return self._stopped

    def _commit_failed(self, exc: StorageFailure) -> None:
        """Apply commit_failure_policy to a commit log failure (the caller re-raises it)."""
        policy = self.config.commit_failure_policy
        if policy == "ignore":
            log.error("commit log failure ignored (commit_failure_policy = ignore): %s", exc)
            return
        if self._stopped is None:
            self._stopped = exc
            log.critical("commit log failure: %s; this node accepts no more writes and keeps serving reads "
                         "(commit_failure_policy = %s)", exc, policy)
        if policy == "die" and self._on_fatal is not None:
            self._on_fatal(exc)

    def wait_durable(self, position: int) -> None:
        """Block until ``position`` is durable per the sync mode (periodic: return at once)."""
        try:
            self._cl().wait_durable(position)
        except StorageFailure as exc:
            self._commit_failed(exc)
            raise

    def sync_commitlog(self) -> int:
        """fsync the commit log now (the periodic mode's tick); returns the durable position."""
        try:
            return self._cl().sync()
        except StorageFailure as exc:
            self._commit_failed(exc)
            raise

    # -- reads ----------------------------------------------------------------------------------

    def read(self, keyspace: str, table: str, key: bytes, columns: list[str] | None = None,
             limit: int | None = None, now_s: int | None = None) -> Partition | None:
        """The merged partition (tombstones included), or ``None`` when no source holds the key.

        ``columns`` restricts to those names (a name ending in ":" selects a whole super column);
        ``limit`` keeps cells in column order until that many *live* cells (at ``now_s``) are in.
        Raises :class:`CorruptSSTableError` if the table has an SSTable known to be corrupt.
        """
        t = self._tables.get((keyspace, table))
        if t is None:
            raise UnknownTable(f"unknown table {keyspace}.{table}")
        if self._held:
            held = self._held.get((keyspace, table))
            if held is not None:
                raise AwaitingRepair(f"table {keyspace}.{table} refuses reads until repaired: {held}")
        if t.ghosts:
            _refuse_if_ghosted(t, key, self.sort_key)
        with self._lock:
            sstables = t.sstables
            parts = []
            p = t.memtable.get(key)
            if p is not None:
                parts.append(p)
            for m in t.flushing:
                p = m.get(key)
                if p is not None:
                    parts.append(p)
        if columns is not None and parts:
            parts = [_filter_columns(p, columns) for p in parts]
        for r in sstables:
            # A known-corrupt SSTable fails every read of its table, whatever the key.
            if r.corrupt is not None:
                raise r.corrupt
        try:
            if columns is not None and len(sstables) > 1 and not _has_super(columns):
                self._read_named(t, parts, sstables, key, self.sort_key, columns)
            else:
                # Only an SSTable the key cache cannot answer needs the sort key (a Murmur3
                # token: pure Python, the costliest step of a read), computed once if at all.
                skey = None
                for r in sstables:
                    if skey is None and key not in r.cached_keys:
                        skey = self.sort_key(key)
                    p = r.find(key, skey, columns)
                    if p is not None:
                        parts.append(p)
        except CorruptSSTableError as exc:
            self._quarantine(t, exc)
            raise
        except OSError as exc:
            raise self._read_failed(t, exc, sstables) from exc
        if not parts:
            return None
        result = parts[0]
        for p in parts[1:]:
            result = result.merge(p)
        result = result.normalized()
        if result.is_empty():
            return None
        if limit is None and len(result.cells) <= 1:
            return result
        return self._shape(result, t.options.column_order, limit, now_s)

    def _read_failed(self, t: _Table, exc: OSError, sstables: list[SSTableReader]) -> StorageFailure:
        """A disk error reading an SSTable: named (the node answers ReadFailure), logged at most
        once per _READ_ERROR_LOG_EVERY_S, then disk_failure_policy. The file is not damaged, so
        nothing is moved to ``corrupt/``."""
        failure = disk_error(exc, t.directory, f"read of {t.qualified}")
        now = self.clock.monotonic()
        if self._read_error_logged is None or now - self._read_error_logged >= _READ_ERROR_LOG_EVERY_S:
            self._read_error_logged = now
            log.error("SSTable read failed: %s; reads of %s that need its SSTables fail until the disk "
                      "answers again (memtable-only reads and writes go on)", failure, t.qualified)
        self._disk_failed(t, failure, _reader_of(exc, sstables))
        return failure

    # -- disk_failure_policy ---------------------------------------------------------------------

    def _disk_failed(self, t: _Table, exc: StorageError, reader: Any = None) -> None:
        """Apply disk_failure_policy to a data-disk failure: an I/O error (a full disk is not one:
        space may come back, and the flush is retried) or a corrupt SSTable (``exc`` is a
        CorruptSSTableError), which ``reader`` met if known. The caller raises ``exc`` as before."""
        if isinstance(exc, DiskFull):
            return
        policy = self.config.disk_failure_policy
        corrupt = isinstance(exc, CorruptSSTableError)
        if policy == "die":
            log.critical("data disk failure: %s; ending the process (disk_failure_policy = die)", exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)
        elif policy == "stop_paranoid" or (policy == "stop" and not corrupt):
            with self._lock:
                first, self._disk_failure = self._disk_failure is None, self._disk_failure or exc
            if first:
                log.critical("data disk failure: %s; this node stops serving client and internode traffic and "
                             "stays up for inspection (disk_failure_policy = %s); replace the disk and restart it",
                             exc, policy)
                if self._on_disk_failure is not None:
                    self._on_disk_failure(exc)
        elif policy == "best_effort" and reader is not None and not corrupt:
            self._ghost(t, [reader], f"{Path(reader.name).name} failed a read ({exc})", on_disk=True)

    def _ghost(self, t: _Table, readers: list[Any], why: str, on_disk: bool) -> None:
        """best_effort: take ``readers`` out of the live set; reads of keys they may hold are refused."""
        with self._lock:
            gone = [r for r in readers if r in t.sstables]
            if not gone:
                return
            t.sstables = [r for r in t.sstables if r not in gone]
            t.ghosts = [*t.ghosts, *(_Ghost(r, why, on_disk) for r in gone)]
            for r in gone:
                r.release_keys()
        log.error("%s: %s taken out of service (disk_failure_policy = best_effort): reads of keys it may hold are "
                  "refused, the table's other keys are served%s", t.qualified, why,
                  " until a restart finds the disk healed" if on_disk else " until a repair refills the table")

    def disk_failure(self) -> str | None:
        """Why disk_failure_policy stop/stop_paranoid stopped this node's traffic, or None."""
        failure = self._disk_failure
        return None if failure is None else str(failure)

    def out_of_service(self) -> dict[str, list[str]]:
        """best_effort: per table, why each SSTable taken out of the live set was."""
        with self._lock:
            return {t.qualified: [g.why for g in t.ghosts] for t in self._tables.values() if t.ghosts}

    @staticmethod
    def _read_named(t: _Table, parts: list[Partition], sstables: list[SSTableReader], key: bytes,
                    sort_key: Callable[[bytes], Any], columns: list[str]) -> None:
        """Named-column read: visit SSTables newest data first, stop once older ones cannot win.

        Cassandra's time-ordered read: when every requested column already has a version newer
        than anything a remaining SSTable holds (its max timestamp), that SSTable cannot change
        the answer — neither by a cell nor by a deletion, which would carry an older timestamp.
        An SSTable whose column bounds hold none of the names is not looked at: those bounds
        exist only for a file without partition or range tombstones, so it has nothing to add.
        """
        order = t.read_order
        if order[0] is not sstables:
            order = (sstables, sorted(sstables, key=lambda r: -r.max_timestamp))
            t.read_order = order
        if len(columns) == 1:
            StorageEngine._read_one_column(parts, order[1], key, sort_key, columns)
            return
        newest: dict[str, int] = {}
        for p in parts:
            for name, c in p.cells.items():
                if c.timestamp > newest.get(name, _INT64_MIN):
                    newest[name] = c.timestamp
        wanted = len(set(columns))
        skey = None  # computed for the first file the key cache cannot answer
        for r in order[1]:
            if len(newest) == wanted and min(newest.values()) > r.max_timestamp:
                break
            bounds = r.column_bounds
            if bounds is not None and not any(bounds[0] <= c <= bounds[1] for c in columns):
                continue
            if skey is None and key not in r.cached_keys:
                skey = sort_key(key)
            found = r.find_named(key, skey, columns)
            if found is not None:
                parts.append(found)
                for name, c in found.cells.items():
                    if c.timestamp > newest.get(name, _INT64_MIN):
                        newest[name] = c.timestamp

    @staticmethod
    def _read_one_column(parts: list[Partition], files: list[SSTableReader], key: bytes,
                         sort_key: Callable[[bytes], Any], columns: list[str]) -> None:
        """:meth:`_read_named` of one column (the common read), with the same rules."""
        name = columns[0]
        newest: int | None = None
        for p in parts:
            c = p.cells.get(name)
            if c is not None and (newest is None or c.timestamp > newest):
                newest = c.timestamp
        skey = None
        for r in files:  # newest data first
            if newest is not None and newest > r.max_timestamp:
                break
            bounds = r.column_bounds
            if bounds is not None and (name < bounds[0] or name > bounds[1]):
                continue
            if skey is None and key not in r.cached_keys:
                skey = sort_key(key)
            found = r.find_named(key, skey, columns)
            if found is not None:
                parts.append(found)
                c = found.cells.get(name)
                if c is not None and (newest is None or c.timestamp > newest):
                    newest = c.timestamp

    def _shape(self, p: Partition, order: str, limit: int | None, now_s: int | None) -> Partition:
        cells = sorted(p.cells.values(), key=cell_sort_key(order))
        if limit is not None:
            now = self.now_s() if now_s is None else now_s
            kept, live = [], 0
            for c in cells:
                if live >= limit:
                    break
                kept.append(c)
                live += c.is_live(now)
            cells = kept
        return Partition(p.key, {c.name: c for c in cells}, p.partition_tombstone,
                         p.partition_deletion_time, p.range_tombstones)

    def scan(self, keyspace: str, table: str, start: Any = None, end: Any = None,
             skip: frozenset[int] = frozenset()) -> Iterator[Partition]:
        """Partitions with ``start < sort_key(key) <= end`` in sort order (``None`` = unbounded).

        ``skip``: SSTable generations to leave out (a transfer already sent them whole).
        """
        t = self._table(keyspace, table)
        with self._lock:
            mems = [t.memtable, *t.flushing]
            sstables = [r for r in t.sstables if r.generation not in skip] if skip else t.sstables
            mem_keys = [m.sorted_keys() for m in mems]
        for r in sstables:
            if r.corrupt is not None:
                raise r.corrupt
        streams: list[Iterator[tuple[Any, bytes, Partition]]] = []
        for m, (sks, keys) in zip(mems, mem_keys):
            streams.append(self._mem_stream(m, sks, keys, start, end))
        for r in sstables:
            # A generator function, not a generator expression: mypyc builds those as lists, which
            # would read the whole file here, outside the error handling below.
            streams.append(_keyed(r.iter_range(start, end)))
        order = t.options.column_order
        current: Partition | None = None
        merged = heapq.merge(*streams, key=lambda e: (e[0], e[1]))
        while True:
            try:
                _sk, key, part = next(merged)
            except StopIteration:
                break
            except CorruptSSTableError as exc:
                self._quarantine(t, exc)  # as for a point read: answer the error, hold the reads
                raise
            except OSError as exc:
                raise self._read_failed(t, exc, sstables) from exc
            if current is not None and current.key == key:
                current = current.merge(part)
                continue
            if current is not None and not (current := current.normalized()).is_empty():
                yield self._shape(current, order, None, None)
            current = part
        if current is not None and not (current := current.normalized()).is_empty():
            yield self._shape(current, order, None, None)

    def _mem_stream(self, m: Memtable, sks: list[Any], keys: list[bytes], start: Any, end: Any
                    ) -> Iterator[tuple[Any, bytes, Partition]]:
        i = 0 if start is None else bisect.bisect_right(sks, start)
        j = len(sks) if end is None else bisect.bisect_right(sks, end)
        for n in range(i, j):
            with self._lock:
                p = m.get(keys[n])
            if p is not None:
                yield sks[n], keys[n], p

    # -- flush ----------------------------------------------------------------------------------

    def flush(self, keyspace: str | None = None, table: str | None = None) -> list[str]:
        """Write memtables to SSTables (all tables, one keyspace, or one table); returns their names."""
        with self._lock:
            targets = [t for (ks, name), t in self._tables.items()
                       if (keyspace is None or ks == keyspace) and (table is None or name == table)]
        if keyspace is not None and table is not None and not targets:
            raise UnknownTable(f"unknown table {keyspace}.{table}")
        flushed = [t.qualified for t in targets if self._flush_table(t)]
        self._discard_segments()
        return flushed

    def _flush_table(self, t: _Table) -> bool:
        cl = self._cl()
        with t.flush_lock:
            with self._lock:
                mt = t.memtable
                if len(mt):
                    mt.switch_position = cl.current_position()
                    t.memtable = Memtable(self.sort_key)
                    t.flushing = [*t.flushing, mt]
                elif not t.flushing:
                    # Nothing buffered: every record of this table so far is already in SSTables.
                    cl.mark_flushed(t.id, cl.current_position())
                    return False
                pending = list(t.flushing)
            for m in pending:  # earlier failures first, so replay positions stay in order
                self._write_memtable(t, m)
            return True

    def _write_memtable(self, t: _Table, mt: Memtable) -> None:
        sks, keys = mt.sorted_keys()
        points = self._split_points
        # One SSTable per token range the memtable touches (keys are in sort order, so each
        # range's keys are one contiguous run).
        runs: list[tuple[int, int]] = []
        start = 0
        for i in range(1, len(keys) + 1):
            if i == len(keys) or (points and bisect.bisect_left(points, sks[i]) != bisect.bisect_left(points, sks[start])):
                runs.append((start, i))
                start = i
        readers: list[SSTableReader] = []
        writer: SSTableWriter | None = None
        runs = runs or [(0, 0)]
        try:
            for n, (lo, hi) in enumerate(runs):
                with self._lock:
                    gen = t.next_generation
                    t.next_generation += 1
                writer = SSTableWriter(t.directory, gen, hi - lo, t.options.bloom_fp_chance, self._fault)
                for key in keys[lo:hi]:
                    writer.add(mt.parts[key].snapshot())
                # Only the last part says the memtable is flushed: a kill before it leaves the
                # earlier parts visible, and their position would make replay skip what the
                # unfinished part held (replay takes the highest position of the SSTables).
                position = (mt.switch_position or 0) if n == len(runs) - 1 else 0
                writer.finish({"replay_position": position, "origin": "flush",
                               "created_us": self.clock.wall_us()})
                readers.append(SSTableReader(t.directory, gen, self.sort_key, self._block_cache_entries(), self._fault,
                                             self._key_cache))
                writer = None
        except OSError as exc:
            # The memtable stays in t.flushing and is retried next round (a full disk may clear);
            # the parts already written go too, so the retry does not leave duplicates behind.
            self._abort_outputs(t, writer, readers)
            failure = disk_error(exc, t.directory, "flush")
            log.error("flush of %s failed: %s; its memtable (%d partitions) stays in memory and in the "
                      "commit log, and is flushed again next round", t.qualified, failure, len(keys))
            self._disk_failed(t, failure)
            raise failure from exc
        except BaseException:
            self._abort_outputs(t, writer, readers)
            raise
        with self._lock:
            t.sstables = sorted([*readers, *t.sstables], key=lambda r: -r.generation)
            t.flushing = [m for m in t.flushing if m is not mt]
        self._cl().mark_flushed(t.id, mt.switch_position or 0)

    @staticmethod
    def _abort_outputs(t: _Table, writer: SSTableWriter | None, done: list[SSTableReader]) -> None:
        """Remove a failed flush's or compaction's unfinished writer and its finished parts."""
        if writer is not None:
            _abort_quietly(writer)
        for r in done:
            r.close()
            try:
                remove_generation(t.directory, r.generation)
            except OSError as exc:
                log.error("cannot remove part %d of a failed SSTable write: %s", r.generation, exc)

    def set_split_points(self, points: Any) -> None:
        """Cut flush and compaction output at these sort keys (the ring's tokens; empty: never)."""
        self._split_points = tuple(sorted(set(points)))

    def split_points(self) -> tuple[Any, ...]:
        """The sort keys at which output is cut now."""
        return self._split_points

    def range_of(self, sort_key: Any) -> int:
        """Index of the split range holding ``sort_key`` (``points[i-1] < sort_key <= points[i]``)."""
        return bisect.bisect_left(self._split_points, sort_key)

    def _expected_in_range(self, chosen: list[SSTableReader], expected: int, rng: int) -> int:
        """Partitions a compaction's output for split range ``rng`` should size its bloom filter for.

        Integer tokens hash keys evenly, so the range's share of the inputs' token span predicts
        its share of their partitions (with a margin); otherwise every input partition counts.
        """
        points = self._split_points
        firsts = [r.first[0] for r in chosen if r.first is not None]
        lasts = [r.last[0] for r in chosen if r.last is not None]
        if not points or not firsts or not all(isinstance(x, int) for x in (*points, *firsts, *lasts)):
            return expected
        lo_in, hi_in = min(firsts), max(lasts)
        lo = points[rng - 1] if rng > 0 else lo_in
        hi = points[rng] if rng < len(points) else hi_in
        span = hi_in - lo_in
        if span <= 0:
            return expected
        share = max(0, min(hi, hi_in) - max(lo, lo_in)) / span
        return min(expected, int(expected * share * 1.25) + 64)

    def _group_of(self, r: SSTableReader) -> int:
        """The split range an SSTable lies wholly in, or -1 when it spans several (or is empty)."""
        if r.first is None or r.last is None:
            return -1
        lo, hi = self.range_of(r.first[0]), self.range_of(r.last[0])
        return lo if lo == hi else -1

    def _discard_segments(self) -> None:
        cl = self._cl()
        with self._lock:
            live = {t.id for t in self._tables.values()}
        if cl.segment_count() > 1:
            # Closes completed segments so they can be deleted; a failed fsync here is a commit log
            # failure like any other (the policy applies now, not at the next write).
            self.sync_commitlog()
        cl.discard_clean(live)

    def maybe_flush(self) -> list[str]:
        """Flush tables past the memtable threshold, and the oldest ones when the log is too big."""
        threshold = self.config.flush_threshold_bytes
        with self._lock:
            due = [t for t in self._tables.values() if t.memtable.bytes >= threshold]
            live = {t.id: t for t in self._tables.values()}
        cl = self._cl()
        if cl.total_bytes() > self.config.total_space_bytes:
            due += [live[tid] for tid in cl.oldest_dirty_tables(set(live)) if live[tid] not in due]
        flushed = [t.qualified for t in due if self._flush_table(t)]
        if flushed:
            self._discard_segments()
        return flushed

    # -- compaction -----------------------------------------------------------------------------

    def compact(self, keyspace: str, table: str, major: bool = False, resplit: bool = True) -> dict[str, Any] | None:
        """Run one size-tiered compaction (or a major one); returns what it did, or ``None``.

        ``resplit=False`` leaves SSTables spanning split ranges alone (re-cutting them at new
        split points waits while a range transfer reads from this node).
        """
        t = self._table(keyspace, table)
        with self._lock:
            candidates = [r for r in t.sstables if r.generation not in t.compacting and r.corrupt is None]
            if major:
                chosen = choose_compaction(candidates, t.options, major)
            else:
                # Compact within a token range: SSTables of one split range together; SSTables
                # spanning ranges (written before the ring changed) form their own group, and
                # their output is cut at the current split points.
                groups: dict[int, list[SSTableReader]] = {}
                for r in candidates:
                    groups.setdefault(self._group_of(r), []).append(r)
                chosen = []
                for g in sorted(groups):
                    if g == -1 and not resplit:
                        continue
                    chosen = choose_compaction(groups[g], t.options, major)
                    if len(chosen) >= 2:
                        break
            if not chosen or (not major and len(chosen) < 2):
                return None
            t.compacting |= {r.generation for r in chosen}
        try:
            return self._run_compaction(t, chosen)
        finally:
            with self._lock:
                t.compacting -= {r.generation for r in chosen}

    def compact_due(self, resplit: bool = True) -> list[dict[str, Any]]:
        """One round of background compaction: every table whose buckets are due (``resplit``: as
        for :meth:`compact`)."""
        with self._lock:
            tables = list(self._tables.values())
        done = []
        for t in tables:
            result = self.compact(t.keyspace, t.name, resplit=resplit)
            if result is not None:
                done.append(result)
        return done

    def _max_purgeable(self, t: _Table, chosen: set[int]) -> Callable[[bytes, Any], int | None]:
        def oldest_elsewhere(key: bytes, skey: Any) -> int | None:
            with self._lock:
                mems = [t.memtable, *t.flushing]
                others = [r for r in t.sstables if r.generation not in chosen]
                others += [g.reader for g in t.ghosts if g.on_disk]  # loaded again at the next start
            oldest: int | None = None
            for m in mems:
                if key in m.parts and m.min_timestamp is not None:
                    oldest = m.min_timestamp if oldest is None else min(oldest, m.min_timestamp)
            for r in others:
                lo = r.stats.get("min_timestamp")
                if r.corrupt is not None:
                    lo = _INT64_MIN  # unknown content: never purge what it might shadow
                elif lo is None or not r.might_contain(key, skey):
                    continue
                oldest = lo if oldest is None else min(oldest, lo)
            return oldest
        return oldest_elsewhere

    def _run_compaction(self, t: _Table, chosen: list[SSTableReader]) -> dict[str, Any]:
        started = self.clock.monotonic()
        now = self.now_s()
        chosen_gens = {r.generation for r in chosen}
        expected = sum(r.stats.get("partitions", 0) for r in chosen)
        # Inputs of one split range have one output; others are cut at the split points, each
        # output's bloom filter sized for every input partition (an over-sized filter only
        # lowers the false-positive rate).
        extra = {"replay_position": max(r.stats.get("replay_position", 0) for r in chosen),
                 "origin": "compaction", "ancestors": sorted(chosen_gens)}
        readers: list[SSTableReader] = []
        writer: SSTableWriter | None = None
        writer_range = -1
        out_bytes = 0

        def close_writer() -> None:
            nonlocal writer, out_bytes
            if writer is None:
                return
            out_bytes += writer.finish({**extra, "created_us": self.clock.wall_us()})
            if writer.stats["partitions"]:
                readers.append(SSTableReader(t.directory, writer.generation, self.sort_key, self._block_cache_entries(),
                                             self._fault, self._key_cache))
            else:
                remove_generation(t.directory, writer.generation)
            writer = None

        try:
            stream = compacted_partitions(chosen, now, t.options.gc_grace_seconds,
                                          self._max_purgeable(t, chosen_gens), self.sort_key)
            points = self._split_points
            for p in stream:
                rng = bisect.bisect_left(points, self.sort_key(p.key)) if points else 0
                if writer is None or rng != writer_range:
                    close_writer()
                    with self._lock:
                        gen = t.next_generation
                        t.next_generation += 1
                    writer = SSTableWriter(t.directory, gen, self._expected_in_range(chosen, expected, rng),
                                           t.options.bloom_fp_chance, self._fault)
                    writer_range = rng
                writer.add(p)
            close_writer()
        except CorruptSSTableError as exc:
            self._abort_outputs(t, writer, readers)
            log.error("compaction of %s stopped: %s", t.qualified, exc)
            self._disk_failed(t, exc)
            raise
        except OSError as exc:
            self._abort_outputs(t, writer, readers)
            failure = disk_error(exc, t.directory, "compaction")
            log.error("compaction of %s failed: %s; its %d input SSTables stay live", t.qualified, failure,
                      len(chosen))
            self._disk_failed(t, failure, _reader_of(exc, chosen))
            raise failure from exc
        except BaseException:
            self._abort_outputs(t, writer, readers)
            raise
        # The inputs are recorded as replaced before any is deleted: a deletion the disk refuses
        # part way could otherwise leave an input holding data whose (purged) tombstone was in
        # an input deleted, and the data came back at the next start. Without the record, every
        # input stays on disk, all together (they come back at a restart beside the output).
        try:
            marker: Path | None = _mark_obsolete(t.directory, chosen_gens)
        except OSError as exc:
            marker = None
            log.error("compaction of %s: cannot record its inputs as replaced (%s); they stay on disk",
                      t.qualified, exc)
        with self._lock:
            keep = [r for r in t.sstables if r.generation not in chosen_gens]
            t.sstables = sorted(readers + keep, key=lambda r: -r.generation)
            for r in chosen:
                r.release_keys()
            # Under the lock so a snapshot never links a half-deleted generation.
            if marker is not None:
                _remove_marked(t.directory, marker, chosen_gens)
        in_bytes = sum(r.data_bytes for r in chosen)
        elapsed = self.clock.monotonic() - started
        outputs = sorted(r.generation for r in readers)
        log.info("compacted %s: %d SSTables, %d -> %d bytes in %d SSTable(s) in %.2fs", t.qualified, len(chosen),
                 in_bytes, out_bytes if readers else 0, len(outputs), elapsed)
        return {"table": t.qualified, "inputs": sorted(chosen_gens), "output": outputs[0] if outputs else None,
                "outputs": outputs, "bytes_in": in_bytes, "bytes_out": out_bytes if readers else 0, "seconds": elapsed}

    # -- whole-file transfer (node/rangecopy.py) ------------------------------------------------

    def whole_sstables(self, keyspace: str, table: str, segments: Any) -> list[SSTableReader]:
        """Live, intact SSTables whose keys all lie in one ``(lo, hi]`` sort-key segment (None = open)."""
        return self._sstables_by_segments(keyspace, table, segments, whole=True)

    def partial_sstables(self, keyspace: str, table: str, segments: Any) -> list[SSTableReader]:
        """Live, intact SSTables that overlap some ``(lo, hi]`` segment but lie wholly in none
        (their overlap moves as slices, node/storage/slicing.py)."""
        return self._sstables_by_segments(keyspace, table, segments, whole=False)

    def _sstables_by_segments(self, keyspace: str, table: str, segments: Any, whole: bool) -> list[SSTableReader]:
        """The live, intact SSTables wholly inside a segment (``whole``) or overlapping one without
        lying wholly inside any (not ``whole``), oldest generation first."""
        t = self._table(keyspace, table)
        with self._lock:
            sstables = list(t.sstables)
        out = []
        for r in sstables:
            if r.corrupt is not None or isinstance(r, _CorruptSSTable) or r.first is None or r.last is None:
                continue
            first, last = r.first[0], r.last[0]
            inside = any((lo is None or first > lo) and (hi is None or last <= hi) for lo, hi in segments)
            if whole:
                if inside:
                    out.append(r)
            elif not inside and any((lo is None or last > lo) and (hi is None or first <= hi) for lo, hi in segments):
                out.append(r)
        return sorted(out, key=lambda r: r.generation)

    def live_sstable(self, keyspace: str, table: str, generation: int) -> SSTableReader | None:
        """The live, intact reader of one generation, or None."""
        t = self._table(keyspace, table)
        with self._lock:
            for r in t.sstables:
                if r.generation == generation and r.corrupt is None and not isinstance(r, _CorruptSSTable):
                    return r
        return None

    def sstable_files(self, keyspace: str, table: str, generation: int) -> list[Path] | None:
        """Component paths of a live SSTable, TOC last, or None when it is no longer live."""
        t = self._table(keyspace, table)
        with self._lock:
            for r in t.sstables:
                if r.generation == generation and r.corrupt is None:
                    return r.files()
        return None

    def import_sstable(self, keyspace: str, table: str, directory: Path, generation: int,
                       data_crc: int | None = None) -> int:
        """Verify a received SSTable against its digest and add it to the live set atomically.

        Raises :class:`CorruptSSTableError` (nothing imported) when any check fails; returns the
        local generation. ``data_crc``: the data file's CRC computed while it was received; when
        it matches the digest, the data file is not read a second time. Components are renamed
        in, the TOC last (the on-disk commit point), then the reader joins the live set under the
        write lock.
        """
        t = self._table(keyspace, table)
        try:
            check = SSTableReader(directory, generation, self.sort_key, 16)
            try:
                if data_crc is None or data_crc != check.digests["Data.db"][0]:
                    check.verify()
            finally:
                check.close()
            restamp(directory, generation, {"replay_position": 0, "origin": "stream",
                                            "created_us": self.clock.wall_us()})
        except OSError as exc:  # the received files could not be read or restamped: nothing imported
            raise disk_error(exc, directory, f"import into {t.qualified}") from exc
        with self._lock:
            gen = t.next_generation
            t.next_generation += 1
        try:
            for comp in (*COMPONENTS, DIGEST, TOC):
                os.rename(component_path(directory, generation, comp), component_path(t.directory, gen, comp))
            fsync_dir(t.directory)
            reader = SSTableReader(t.directory, gen, self.sort_key, self._block_cache_entries(), self._fault,
                                   self._key_cache)
        except OSError as exc:
            remove_generation(t.directory, gen)
            raise disk_error(exc, t.directory, f"import into {t.qualified}") from exc
        except BaseException:
            remove_generation(t.directory, gen)
            raise
        with self._lock:
            t.sstables = sorted([reader, *t.sstables], key=lambda r: -r.generation)
        return gen

    # -- snapshots ------------------------------------------------------------------------------

    def _snapshot_dir(self, tag: str) -> Path:
        if not isinstance(tag, str) or not _TAG_RE.match(tag) or tag in (".", ".."):
            raise InvalidName(f"snapshot tag {tag!r} must be 1-128 letters, digits, '_', '.' or '-'")
        return self.data_dir / "snapshots" / tag

    def snapshot(self, tag: str) -> Path:
        """Flush, then hard-link every live SSTable under ``snapshots/<tag>/``; returns that path."""
        root = self._snapshot_dir(tag)
        if root.exists():
            raise InvalidName(f"snapshot {tag!r} already exists")
        self.flush()
        tmp = root.with_name(tag + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)  # even with no table: the snapshot is then empty
            with self._lock:
                for t in self._tables.values():
                    dest = tmp / t.keyspace / t.name
                    dest.mkdir(parents=True, exist_ok=True)
                    for r in t.sstables:
                        for f in r.files():
                            os.link(f, dest / f.name)
                if self._schema_path().exists():
                    shutil.copy2(self._schema_path(), tmp / "schema.json")
            os.rename(tmp, root)
        except OSError as exc:
            # A half-linked snapshot is never listed (".partial"); remove what we can of it.
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_error(exc, root, f"snapshot {tag!r}") from exc
        try:
            fsync_dir(root.parent)
        except OSError as exc:
            raise disk_error(exc, root, f"snapshot {tag!r} (made, but its directory fsync)") from exc
        return root

    def list_snapshots(self) -> list[str]:
        """Tags of existing snapshots."""
        base = self.data_dir / "snapshots"
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.endswith(".partial"))

    def clear_snapshot(self, tag: str) -> None:
        """Delete one snapshot (its hard links; live SSTables are untouched)."""
        root = self._snapshot_dir(tag)
        if not root.exists():
            raise InvalidName(f"no snapshot {tag!r}")
        try:
            shutil.rmtree(root)
        except OSError as exc:
            raise disk_error(exc, root, f"clearing snapshot {tag!r}") from exc

    # -- health and statistics -------------------------------------------------------------------

    def corrupt_sstables(self) -> list[str]:
        """Data file names of every SSTable detected corrupt."""
        with self._lock:
            return [r.name for t in self._tables.values() for r in t.sstables if r.corrupt is not None]

    def quarantined(self) -> list[str]:
        """Data files this engine moved to ``corrupt/`` after they failed a read."""
        with self._lock:
            return list(self._quarantined)

    def verify(self, keyspace: str | None = None, table: str | None = None) -> list[str]:
        """Check every data file's full checksum (a scrub); returns the names found corrupt."""
        with self._lock:
            targets = [t for (ks, n), t in self._tables.items()
                       if (keyspace is None or ks == keyspace) and (table is None or n == table)]
        bad = []
        for t in targets:
            for r in t.sstables:
                try:
                    if r.corrupt is None:
                        r.verify()
                except CorruptSSTableError as exc:
                    log.error("%s", exc)
                if r.corrupt is not None:
                    bad.append(r.name)
        return bad

    def _quarantine(self, t: _Table, exc: CorruptSSTableError) -> None:
        """Move SSTables found corrupt while reading to ``corrupt/`` and refuse the table's reads
        until a repair (a scrub) refilled it.

        Not Cassandra's best_effort (answer from the intact SSTables): the moved file may have held
        the newest version of any of its keys (or a tombstone), and answering without it is a stale
        read a QUORUM read can return when the replica that still has the write is not asked.
        Refusing makes this replica one that failed the read: the others answer.
        """
        dest = self.data_dir / "corrupt" / t.keyspace / t.name
        best_effort = self.config.disk_failure_policy == "best_effort"
        with self._lock:
            bad = [r for r in t.sstables if r.corrupt is not None and not isinstance(r, _CorruptSSTable)]
            if not bad:
                return
            t.sstables = [r for r in t.sstables if r not in bad]
            for r in bad:
                r.release_keys()
            self._quarantined.extend(str(dest / Path(r.name).name) for r in bad)
            names = ", ".join(Path(r.name).name for r in bad)
            if best_effort:
                # Only the keys the quarantined file may hold (its key range and bloom filter,
                # checked against their digest at open) are refused until a repair.
                t.ghosts = [*t.ghosts, *(_Ghost(r, f"quarantined {Path(r.name).name} after a failed checksum "
                                                   f"on read", False) for r in bad)]
            else:
                self._held[(t.keyspace, t.name)] = f"quarantined {names} after a failed checksum on read"
                self._save_held()
            try:
                dest.mkdir(parents=True, exist_ok=True)
                for r in bad:
                    _move_aside(r, dest)
            except OSError as move_exc:
                log.error("cannot move corrupt SSTable of %s to %s: %s", t.qualified, dest, move_exc)
        # Not closed here: a concurrent read may still hold its mapping; the GC releases it.
        log.error("%s (found while reading %s); quarantined to %s; %s until a scrub or repair restores what "
                  "it held (writes go on)", exc, t.qualified, dest,
                  "reads of keys it may hold are refused and the table's other keys served (disk_failure_policy = "
                  "best_effort)" if best_effort else "the table refuses reads")
        self._disk_failed(t, exc)

    def discard_corrupt(self, keyspace: str, table: str) -> list[str]:
        """Move corrupt SSTables of a table to ``corrupt/`` so it serves again (then repair it)."""
        t = self._table(keyspace, table)
        dest = self.data_dir / "corrupt" / keyspace / t.name
        moved = []
        with self._lock:
            bad = [r for r in t.sstables if r.corrupt is not None]
            if not bad:
                return []
            try:
                dest.mkdir(parents=True, exist_ok=True)
                for r in bad:
                    _move_aside(r, dest)
                    r.close()
                    moved.append(r.name)
            except OSError as exc:
                raise disk_error(exc, dest, f"discard of corrupt SSTables of {t.qualified}") from exc
            finally:
                t.sstables = [r for r in t.sstables if r.name not in moved]
        log.warning("moved corrupt SSTables of %s to %s: %s", t.qualified, dest, moved)
        return moved

    def hold_reads(self, keyspace: str, table: str, why: str) -> None:
        """Refuse reads of a table (writes, scans for repair and streaming go on) until released."""
        self._table(keyspace, table)
        with self._lock:
            self._held[(keyspace, table)] = why
            self._save_held()

    def release_reads(self, keyspace: str | None = None, table: str | None = None) -> list[str]:
        """Serve reads again (of one table, or of all); returns the tables released."""
        with self._lock:
            keys = [k for k in self._held if keyspace in (None, k[0]) and table in (None, k[1])]
            for k in keys:
                del self._held[k]
            if keys:
                self._save_held()
            # best_effort: a quarantined file's keys are back too (a read error's file is not:
            # it is still on disk, loaded again at the next start).
            for (ks, name), t in self._tables.items():
                if keyspace in (None, ks) and table in (None, name) and any(not g.on_disk for g in t.ghosts):
                    t.ghosts = [g for g in t.ghosts if g.on_disk]
                    if (ks, name) not in keys:
                        keys.append((ks, name))
        return [f"{ks}.{t}" for ks, t in keys]

    def _save_held(self) -> None:
        """Persist which tables refuse reads until repaired (under the lock).

        The hold lives in memory; without this file a restart before the repair served the table
        again without the quarantined file's data: its keys read as missing or stale, silently.
        """
        path = self.data_dir / HELD_FILE
        try:
            if self._held:
                write_atomic(path, json.dumps(sorted([ks, t, why] for (ks, t), why in self._held.items())))
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot record the tables refusing reads in %s: %s; a restart before their repair "
                      "would serve them without the quarantined data", path, exc)

    def _load_held(self) -> None:
        """Hold again, at open, the reads of tables held when the node stopped (see _save_held)."""
        path = self.data_dir / HELD_FILE
        try:
            entries = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (tables refusing reads until repaired): %s; holding none", path, exc)
            return
        for entry in entries if isinstance(entries, list) else []:
            if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(e, str) for e in entry)):
                continue
            ks, name, why = entry
            if (ks, name) in self._tables:
                self._held[(ks, name)] = why
                log.error("table %s.%s still refuses reads after the restart: %s; a repair (a scrub, or the "
                          "node's own after auto_repair_after_s) restores what it held", ks, name, why)

    def holds_reads(self) -> bool:
        """Whether any table refuses reads that a repair would let it serve again (no lock: the
        node checks it every housekeeping round)."""
        return bool(self._held) or any(not g.on_disk for t in self._tables.values() for g in t.ghosts)

    def held_tables(self) -> dict[str, str]:
        """Tables refusing reads (all of them, or with best_effort the keys of an SSTable taken
        out of service) until repaired, with why."""
        with self._lock:
            out = {f"{ks}.{t}": why for (ks, t), why in self._held.items()}
            for t in self._tables.values():
                for g in t.ghosts:
                    if not g.on_disk:
                        out.setdefault(t.qualified, f"{g.why} (only the keys it may hold)")
            return out

    def sstable_metadata(self, scan: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Per table ("keyspace.table"), each live SSTable's recorded statistics
        (``sstablemetadata``: partitions, cells, tombstones, min/max timestamp, max local
        deletion time, first/last key), and with ``scan`` the same counted again from its data
        file (``"scan"``, or ``"scan_error"`` when the file could not be read through). A file a
        compaction replaced while it was scanned is left out: its count may have been cut short."""
        with self._lock:
            tables = [(t.qualified, t, list(t.sstables)) for t in self._tables.values()]
        out: dict[str, list[dict[str, Any]]] = {}
        for name, t, readers in sorted(tables, key=lambda e: e[0]):
            rows = []
            for r in readers:
                if r.corrupt is not None:
                    continue
                # Relative to the data directory: the same answer wherever the node's files live
                # (a simulation's temporary directory must not change the bytes it sends).
                row: dict[str, Any] = {"sstable": os.path.relpath(r.name, self.data_dir),
                                       "stats": {k: r.stats.get(k) for k in SSTABLE_METADATA_FIELDS}}
                if scan:
                    try:
                        row["scan"] = r.scan_stats()
                    except Exception as exc:  # noqa: BLE001 - reported: a file that cannot be read is not judged
                        row["scan_error"] = f"{type(exc).__name__}: {exc}"
                    if r not in t.sstables:
                        continue
                rows.append(row)
            out[name] = rows
        return out

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per table ("keyspace.table"): memtable size, SSTable count, live bytes, and more."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for t in self._tables.values():
                ss = t.sstables
                out[t.qualified] = {
                    "memtable_bytes": t.memtable.bytes,
                    "memtable_partitions": len(t.memtable),
                    "memtable_cells": t.memtable.cells,
                    "flushing_memtables": len(t.flushing),
                    "sstable_count": len(ss),
                    "live_bytes": sum(r.data_bytes for r in ss),
                    "sstable_partitions": sum(r.stats.get("partitions", 0) for r in ss if r.corrupt is None),
                    "sstable_tombstones": sum(r.stats.get("tombstones", 0) for r in ss if r.corrupt is None),
                    "corrupt_sstables": [r.name for r in ss if r.corrupt is not None],
                    "out_of_service": [g.why for g in t.ghosts],
                    "compacting": len(t.compacting),
                }
        if self._commitlog is not None:
            out["_commitlog"] = {"segments": self._commitlog.segment_count(),
                                 "bytes": self._commitlog.total_bytes(),
                                 "synced_position": self._commitlog.synced_position(),
                                 "unsynced_bytes": self._commitlog.unsynced_bytes(),
                                 "files": self.files.name}
        return out


def _move_aside(r: Any, dest: Path) -> None:
    """Move an SSTable's files to ``dest``, its TOC first: a move the disk refuses part way leaves
    a generation without a TOC (removed at the next start as unfinished), never a TOC naming a
    file that is gone (the next start failed on it)."""
    for f in reversed(r.files()):
        if f.exists():
            os.replace(f, dest / f.name)


_OBSOLETE_RE = re.compile(r"^obsolete-(\d+)\.txt$")


def _mark_obsolete(directory: Path, gens: set[int]) -> Path:
    """Durably record that generations ``gens`` are replaced (a compaction's inputs)."""
    path = directory / f"obsolete-{min(gens)}.txt"
    write_atomic(path, "".join(f"{g}\n" for g in sorted(gens)))
    return path


def _remove_marked(directory: Path, marker: Path, gens: set[int]) -> bool:
    """Delete the generations a marker lists, then the marker; False (logged) if the disk refused."""
    try:
        for gen in sorted(gens):
            remove_generation(directory, gen)
        marker.unlink()
        return True
    except OSError as exc:
        # Kept: the next start deletes what is left, and never loads a listed generation.
        log.error("cannot remove replaced SSTables %s in %s: %s", sorted(gens), directory, exc)
        return False


def _remove_obsolete(directory: Path) -> set[int]:
    """At open: delete the generations compactions recorded as replaced; returns every one listed
    (never loaded, even when still on disk)."""
    listed: set[int] = set()
    for p in sorted(directory.iterdir()):
        if _OBSOLETE_RE.match(p.name):
            try:
                gens = {int(x) for x in p.read_text().split()}
            except (OSError, ValueError) as exc:  # written atomically, so it is not a torn one
                log.error("ignoring unreadable compaction record %s: %s", p, exc)
                continue
            listed |= gens
            if gens and _remove_marked(directory, p, gens):
                log.info("removed SSTables %s a compaction had replaced in %s", sorted(gens), directory)
        elif p.name.startswith("obsolete-") and p.name.endswith(".tmp"):
            try:
                p.unlink(missing_ok=True)  # never renamed into place: that compaction left all its inputs
            except OSError as exc:
                log.error("cannot remove %s: %s", p, exc)
    return listed


class _SchemaReplaced(StorageFailure):
    """schema.json was replaced but its directory fsync failed: the change stands, in memory too."""


def _abort_quietly(writer: SSTableWriter) -> None:
    """Remove a failed writer's files; an error doing so must not hide the original one."""
    try:
        writer.abort()
    except OSError as exc:
        log.error("cannot remove the parts of a failed SSTable write: %s", exc)


def _refuse_if_ghosted(t: _Table, key: bytes, sort_key: Callable[[bytes], Any]) -> None:
    """AwaitingRepair when an SSTable best_effort took out of service may hold ``key``: answering
    without it could be a stale answer, never one to give silently."""
    skey = sort_key(key)
    for g in t.ghosts:
        if g.reader.might_contain(key, skey):
            raise AwaitingRepair(f"table {t.qualified} cannot answer this key: {g.why}, and that SSTable may "
                                 f"hold it (disk_failure_policy = best_effort serves only the keys it cannot hold)")


def _reader_of(exc: OSError, sstables: list[Any]) -> Any:
    """The SSTable whose file an OSError names, if one of ``sstables``."""
    name = str(exc.filename) if exc.filename is not None else None
    return next((r for r in sstables if name is not None and str(getattr(r, "data_path", "")) == name), None)


def _has_super(columns: list[str]) -> bool:
    """True if any requested name selects a whole super column (ends with ":")."""
    if len(columns) == 1:
        return columns[0].endswith(":")
    return any(c.endswith(":") for c in columns)


def _keyed(parts: Iterator[tuple[Any, Partition]]) -> Iterator[tuple[Any, bytes, Partition]]:
    """``(sort key, partition key, partition)`` for each ``(sort key, partition)``, lazily."""
    for sk, p in parts:
        yield sk, p.key, p


def _filter_columns(p: Partition, columns: list[str]) -> Partition:
    cells = {}
    for want in columns:
        if want.endswith(":"):
            cells.update({n: c for n, c in p.cells.items() if n.startswith(want)})
        elif want in p.cells:
            cells[want] = p.cells[want]
    return Partition(p.key, cells, p.partition_tombstone, p.partition_deletion_time, p.range_tombstones)


class _CorruptSSTable:
    """Stands in for an SSTable that failed its checks at open: every use raises its error."""

    def __init__(self, directory: Path, generation: int, error: CorruptSSTableError) -> None:
        self.directory = directory
        self.generation = generation
        self.corrupt: CorruptSSTableError | None = error
        self.name = error.path
        self.data_bytes = 0
        self.max_timestamp = _INT64_MAX
        self.stats: dict[str, Any] = {}
        self.column_bounds = None  # unknown content: never skipped
        self.cached_keys: dict[bytes, Any] = {}

    def might_contain(self, key: bytes, skey: Any) -> bool:
        return True

    def get(self, *args: Any, **kwargs: Any) -> Partition | None:
        raise self.corrupt  # type: ignore[misc]

    # Methods, not ``find = find_named = get`` aliases: mypyc compiles this module.
    def find(self, *args: Any, **kwargs: Any) -> Partition | None:
        raise self.corrupt  # type: ignore[misc]

    def find_named(self, *args: Any, **kwargs: Any) -> Partition | None:
        raise self.corrupt  # type: ignore[misc]

    def iter_range(self, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Partition]]:
        raise self.corrupt  # type: ignore[misc]

    def verify(self) -> None:
        raise self.corrupt  # type: ignore[misc]

    def files(self) -> list[Path]:
        from .sstable import COMPONENTS, DIGEST, component_path
        return [component_path(self.directory, self.generation, c) for c in (*COMPONENTS, DIGEST, TOC)]

    def release_keys(self) -> None:
        pass

    def close(self) -> None:
        pass
