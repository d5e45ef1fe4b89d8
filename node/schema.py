"""Keyspaces and tables: definitions, validation, last-write-wins merge and the on-disk copy.

Schema changes may start on any node, possibly two at once, so the schema is a set of entries
merged last-write-wins by timestamp (a drop is an entry too). Merging is commutative and
idempotent, so every node converges on the same schema whatever order it hears the changes in;
the schema version gossiped under ``SCHEMA`` is a digest of the content, and a node that sees a
different version pulls and merges (Cassandra's schema pull on version mismatch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.durable import write_atomic
from node.protocol import InvalidRequest
from node.ring import Strategy, strategy_from_options
from node.storage.config import TableOptions

READ_REPAIR_MODES = ("BLOCKING", "NONE")
# The options the coordinator (not the storage engine) interprets.
COORDINATOR_OPTIONS = ("read_repair",)
STORAGE_OPTIONS = tuple(f.name for f in dataclasses.fields(TableOptions) if f.name != "extra")


@dataclass
class KeyspaceDef:
    """A keyspace: its replication map; ``timestamp`` is when it was (re)created or dropped."""

    name: str
    replication: dict[str, Any]
    timestamp: int
    dropped: bool = False

    def strategy(self) -> Strategy:
        """The parsed replication strategy."""
        return strategy_from_options(self.replication)


@dataclass
class TableDef:
    """A table in a keyspace with its options; ``timestamp`` is when it was (re)created or dropped."""

    keyspace: str
    name: str
    options: dict[str, Any]
    timestamp: int
    dropped: bool = False

    @property
    def read_repair(self) -> str:
        """BLOCKING (default) or NONE."""
        return str(self.options.get("read_repair", "BLOCKING"))

    def storage_options(self) -> TableOptions:
        """The options the storage engine takes."""
        return TableOptions.from_dict({k: v for k, v in self.options.items() if k in STORAGE_OPTIONS})

    @property
    def column_order(self) -> str:
        """Column order of the table ("name" or "time")."""
        return str(self.options.get("column_order", "name"))


def _wins(new: Any, old: Any) -> bool:
    # Greater timestamp wins; on a tie a drop wins (as a tombstone does), then a stable content
    # comparison so both sides of a tie pick the same entry.
    if new.timestamp != old.timestamp:
        return new.timestamp > old.timestamp
    if new.dropped != old.dropped:
        return new.dropped
    return json.dumps(dataclasses.asdict(new), sort_keys=True, default=str) > json.dumps(
        dataclasses.asdict(old), sort_keys=True, default=str
    )


def validate_replication(replication: Any) -> dict[str, Any]:
    """Check a replication map; InvalidRequest names the problem."""
    if not isinstance(replication, dict):
        raise InvalidRequest("replication must be a map")
    try:
        strategy = strategy_from_options(replication)
    except ValueError as exc:
        raise InvalidRequest(f"replication: {exc}") from exc
    return strategy.describe()


def validate_table_options(options: Any) -> dict[str, Any]:
    """Check table options; InvalidRequest names an unknown option or a bad value."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidRequest("options must be a map")
    out = dict(options)
    for key in out:
        if key not in STORAGE_OPTIONS and key not in COORDINATOR_OPTIONS:
            raise InvalidRequest(f"unknown table option {key!r}; known: {', '.join(STORAGE_OPTIONS + COORDINATOR_OPTIONS)}")
    if "read_repair" in out:
        mode = out["read_repair"]
        if not isinstance(mode, str) or mode.upper() not in READ_REPAIR_MODES:
            raise InvalidRequest(f"read_repair must be BLOCKING or NONE, got {mode!r}")
        out["read_repair"] = mode.upper()
    try:
        opts = TableOptions.from_dict({k: v for k, v in out.items() if k in STORAGE_OPTIONS})
        for f in dataclasses.fields(TableOptions):
            if f.name in out and f.default is not dataclasses.MISSING:
                want = type(f.default)
                value = out[f.name]
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else isinstance(value, want) and not (want is int and isinstance(value, bool))
                if not ok:
                    raise ValueError(f"{f.name} must be {want.__name__}, got {type(value).__name__}")
        opts.validate()
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"table options: {exc}") from exc
    return out


@dataclass
class Schema:
    """Every keyspace and table this node knows, including drops (as entries that win merges)."""

    keyspaces: dict[str, KeyspaceDef] = field(default_factory=dict)
    tables: dict[tuple[str, str], TableDef] = field(default_factory=dict)
    # version()'s digest until merge_entry, the one door to both maps, changes them (the status
    # op and the schema gossip ask for it every second; entries are never changed in place).
    _version: str | None = field(default=None, repr=False, compare=False)

    # ---- queries

    def keyspace(self, name: str) -> KeyspaceDef:
        """The live keyspace ``name`` (InvalidRequest if unknown)."""
        ks = self.keyspaces.get(name)
        if ks is None or ks.dropped:
            raise InvalidRequest(f"unknown keyspace {name!r}")
        return ks

    def table(self, keyspace: str, name: str) -> TableDef:
        """The live table ``keyspace.name`` (InvalidRequest if unknown)."""
        ks = self.keyspace(keyspace)
        t = self.tables.get((keyspace, name))
        if t is None or not self._table_live(t, ks):
            raise InvalidRequest(f"unknown table {keyspace}.{name}")
        return t

    @staticmethod
    def _table_live(t: TableDef, ks: KeyspaceDef | None) -> bool:
        # A table created before its keyspace was last (re)created died with the old keyspace.
        return not t.dropped and ks is not None and not ks.dropped and t.timestamp >= ks.timestamp

    def live_tables(self) -> list[TableDef]:
        """Every live table."""
        return [t for t in self.tables.values() if self._table_live(t, self.keyspaces.get(t.keyspace))]

    def live_keyspaces(self) -> list[KeyspaceDef]:
        """Every live keyspace."""
        return [k for k in self.keyspaces.values() if not k.dropped]

    def version(self) -> str:
        """A digest of the whole schema: equal on two nodes iff they hold the same schema."""
        if self._version is None:
            self._version = hashlib.sha1(json.dumps(self.to_obj(), sort_keys=True).encode()).hexdigest()[:16]
        return self._version

    def describe(self) -> dict[str, Any]:
        """The live schema as plain data (for clients)."""
        return {
            "version": self.version(),
            "keyspaces": {
                k.name: {
                    "replication": k.replication,
                    "tables": {t.name: t.options for t in self.live_tables() if t.keyspace == k.name},
                }
                for k in self.live_keyspaces()
            },
        }

    # ---- changes (each returns the entry to merge; the caller stamps the timestamp)

    def create_keyspace(self, name: str, replication: Any, timestamp: int, if_not_exists: bool = False) -> bool:
        """Add a keyspace; False if it exists and ``if_not_exists``."""
        rep = validate_replication(replication)
        existing = self.keyspaces.get(name)
        if existing is not None and not existing.dropped:
            if if_not_exists:
                return False
            raise InvalidRequest(f"keyspace {name!r} already exists")
        self.merge_entry(KeyspaceDef(name, rep, self._after(existing, timestamp)))
        return True

    def drop_keyspace(self, name: str, timestamp: int, if_exists: bool = False) -> bool:
        """Drop a keyspace and, with it, its tables."""
        existing = self.keyspaces.get(name)
        if existing is None or existing.dropped:
            if if_exists:
                return False
            raise InvalidRequest(f"unknown keyspace {name!r}")
        self.merge_entry(KeyspaceDef(name, existing.replication, self._after(existing, timestamp), dropped=True))
        return True

    def create_table(self, keyspace: str, name: str, options: Any, timestamp: int, if_not_exists: bool = False) -> bool:
        """Add a table; False if it exists and ``if_not_exists``."""
        ks = self.keyspace(keyspace)
        opts = validate_table_options(options)
        existing = self.tables.get((keyspace, name))
        if existing is not None and self._table_live(existing, ks):
            if if_not_exists:
                return False
            raise InvalidRequest(f"table {keyspace}.{name} already exists")
        ts = max(self._after(existing, timestamp), ks.timestamp)
        self.merge_entry(TableDef(keyspace, name, opts, ts))
        return True

    def drop_table(self, keyspace: str, name: str, timestamp: int, if_exists: bool = False) -> bool:
        """Drop a table."""
        try:
            t = self.table(keyspace, name)
        except InvalidRequest:
            if if_exists:
                return False
            raise
        self.merge_entry(TableDef(keyspace, name, t.options, self._after(t, timestamp), dropped=True))
        return True

    @staticmethod
    def _after(existing: Any, timestamp: int) -> int:
        # A change must beat the entry it replaces even if this node's clock is behind.
        return timestamp if existing is None or timestamp > existing.timestamp else existing.timestamp + 1

    # ---- merging and serialisation

    def merge_entry(self, entry: KeyspaceDef | TableDef) -> bool:
        """Merge one entry; True if it changed the schema."""
        if isinstance(entry, KeyspaceDef):
            old = self.keyspaces.get(entry.name)
            if old is None or _wins(entry, old):
                self.keyspaces[entry.name] = entry
                self._version = None
                return old != entry
            return False
        key = (entry.keyspace, entry.name)
        old_t = self.tables.get(key)
        if old_t is None or _wins(entry, old_t):
            self.tables[key] = entry
            self._version = None
            return old_t != entry
        return False

    def merge(self, other: Schema) -> bool:
        """Merge another node's schema into this one; True if anything changed."""
        changed = False
        for ks in other.keyspaces.values():
            changed |= self.merge_entry(dataclasses.replace(ks))
        for t in other.tables.values():
            changed |= self.merge_entry(dataclasses.replace(t))
        return changed

    def to_obj(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON) for the wire and the disk."""
        return {
            "keyspaces": [dataclasses.asdict(k) for k in sorted(self.keyspaces.values(), key=lambda k: k.name)],
            "tables": [dataclasses.asdict(t) for t in sorted(self.tables.values(), key=lambda t: (t.keyspace, t.name))],
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Schema:
        """Inverse of :meth:`to_obj` (ValueError on malformed input)."""
        if not isinstance(obj, dict):
            raise ValueError("schema must be a map")
        out = cls()
        try:
            for k in obj.get("keyspaces", []):
                out.merge_entry(KeyspaceDef(str(k["name"]), dict(k["replication"]), int(k["timestamp"]), bool(k.get("dropped", False))))
            for t in obj.get("tables", []):
                out.merge_entry(
                    TableDef(str(t["keyspace"]), str(t["name"]), dict(t["options"]), int(t["timestamp"]), bool(t.get("dropped", False)))
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed schema: {exc!r}") from exc
        return out


def load_schema(path: Path) -> Schema:
    """The schema stored at ``path`` (empty if none yet)."""
    try:
        return Schema.from_obj(json.loads(path.read_text()))
    except FileNotFoundError:
        return Schema()


def save_schema(path: Path, schema: Schema) -> None:
    """Write the schema atomically and durably (temp file, fsync, rename, fsync the directory)."""
    write_atomic(path, json.dumps(schema.to_obj(), sort_keys=True, indent=1))
