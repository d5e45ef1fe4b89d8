"""The data model: cells, partitions, mutations, and last-write-wins reconciliation.

Everything here is pure (no I/O, no clock): ``now_s`` is always passed in, so the same merge runs
on every replica, inside compaction, and in the property tests' model.

Reconciliation of two versions of one cell (the greater wins):

1. the greater timestamp;
2. on equal timestamps: a tombstone beats an expiring (TTL) cell, which beats a regular cell;
3. between two tombstones the later local deletion time; between two expiring cells the one that
   expires *first* (so when it expires it turns into a tombstone that still wins, and the answer
   never depends on whether a replica has compacted the expired cell yet);
4. then the greater value, bytewise.

For regular cells this is exactly Cassandra's rule ("on equal timestamps a tombstone wins, then the
greater value"); the TTL refinement only makes the order total and independent of ``now``, so every
replica converges to one answer whatever its compaction state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

# Why a separator: super columns are two-level names "super:sub" (architecture.md); a range
# tombstone over the prefix "super:" deletes the whole super column.
SUPER_COLUMN_SEPARATOR = ":"

_TOMBSTONE_RANK = 2
_EXPIRING_RANK = 1
_REGULAR_RANK = 0


@dataclass(frozen=True, slots=True)
class Cell:
    """One column version: ``value is None`` is a tombstone; TTL cells carry their expiry time."""

    name: str
    value: bytes | None
    timestamp: int
    ttl: int | None = None
    # Seconds since the epoch: when a tombstone was written, or when a TTL cell expires.
    local_deletion_time: int | None = None

    @property
    def is_tombstone(self) -> bool:
        """True for a deletion marker."""
        return self.value is None

    def is_live(self, now_s: int) -> bool:
        """True if this cell is a value that has not expired at ``now_s``."""
        if self.value is None:
            return False
        if self.ttl is not None and self.local_deletion_time is not None:
            return now_s < self.local_deletion_time
        return True

    def to_obj(self) -> list[Any]:
        """The msgpack-friendly form ``[value, timestamp, ttl, local_deletion_time]`` (name kept outside)."""
        return [self.value, self.timestamp, self.ttl, self.local_deletion_time]


@dataclass(frozen=True, slots=True)
class RangeTombstone:
    """Deletes every cell whose name starts with ``prefix`` written at or before ``timestamp``."""

    prefix: str
    timestamp: int
    local_deletion_time: int | None = None

    def shadows(self, cell: Cell) -> bool:
        """True if this tombstone deletes ``cell``."""
        return cell.timestamp <= self.timestamp and cell.name.startswith(self.prefix)


def _rank(cell: Cell) -> tuple[Any, ...]:
    if cell.value is None:
        return (_TOMBSTONE_RANK, cell.local_deletion_time or 0, b"")
    if cell.ttl is not None:
        # Negated expiry: the cell that expires first wins (see the module docstring).
        return (_EXPIRING_RANK, -(cell.local_deletion_time or 0), cell.value, cell.ttl)
    return (_REGULAR_RANK, 0, cell.value)


def reconcile(a: Cell, b: Cell) -> Cell:
    """The winning version of one cell under last-write-wins with Cassandra's tie-break."""
    if a.timestamp != b.timestamp:
        return a if a.timestamp > b.timestamp else b
    if a == b:
        return a
    return a if _rank(a) >= _rank(b) else b


def cell_sort_key(column_order: str) -> Any:
    """The key that orders cells in a table: by name, or newest first for "time" tables."""
    if column_order == "time":
        return lambda c: (-c.timestamp, c.name)
    return lambda c: c.name


def cell_from_obj(name: str, obj: list[Any]) -> Cell:
    """Rebuild a cell from :meth:`Cell.to_obj`."""
    return Cell(name, obj[0], obj[1], obj[2], obj[3])


@dataclass(slots=True)
class Partition:
    """A partition (one row): its cells by name, a partition tombstone and range tombstones.

    ``cells`` is a dict in the table's column order when returned by the engine (dicts keep
    insertion order); ``sorted_cells`` re-sorts for any order. A partition returned by ``merge`` or
    the engine is *normalized*: no cell or range tombstone is shadowed by a deletion that covers it,
    so two replicas that hold the same logical content produce the same :meth:`digest`.
    """

    key: bytes
    cells: dict[str, Cell] = field(default_factory=dict)
    partition_tombstone: int | None = None
    partition_deletion_time: int | None = None
    range_tombstones: dict[str, RangeTombstone] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True if the partition holds neither cells nor deletions."""
        return not self.cells and self.partition_tombstone is None and not self.range_tombstones

    def merge(self, other: Partition) -> Partition:
        """Last-write-wins union of two versions of the same partition (normalized)."""
        if self.key != other.key:
            raise ValueError(f"cannot merge partitions {self.key!r} and {other.key!r}")
        pt, pdt = _merge_partition_tombstone(
            self.partition_tombstone, self.partition_deletion_time,
            other.partition_tombstone, other.partition_deletion_time,
        )
        cells = dict(self.cells)
        for name, cell in other.cells.items():
            mine = cells.get(name)
            cells[name] = cell if mine is None else reconcile(mine, cell)
        rts = dict(self.range_tombstones)
        for prefix, rt in other.range_tombstones.items():
            mine_rt = rts.get(prefix)
            rts[prefix] = rt if mine_rt is None else _reconcile_rt(mine_rt, rt)
        return Partition(self.key, cells, pt, pdt, rts).normalized()

    def normalized(self) -> Partition:
        """A copy without cells or range tombstones shadowed by a covering deletion."""
        pt = self.partition_tombstone
        rts = self.range_tombstones
        if pt is not None and rts:
            rts = {p: rt for p, rt in rts.items() if rt.timestamp > pt}
        cells = self.cells
        if pt is not None or rts:
            rt_list = list(rts.values())
            cells = {
                name: c
                for name, c in cells.items()
                if (pt is None or c.timestamp > pt) and not any(rt.shadows(c) for rt in rt_list)
            }
        if cells is self.cells and rts is self.range_tombstones:
            return self
        return Partition(self.key, cells, pt, self.partition_deletion_time, dict(rts))

    def live_cells(self, now_s: int) -> dict[str, Cell]:
        """Cells that are visible at ``now_s``: not deleted, not shadowed, not expired."""
        norm = self.normalized()
        return {name: c for name, c in norm.cells.items() if c.is_live(now_s)}

    def sorted_cells(self, column_order: str = "name") -> list[Cell]:
        """All cells (tombstones included) in a table's column order."""
        return sorted(self.cells.values(), key=cell_sort_key(column_order))

    def digest(self) -> bytes:
        """A stable 16-byte hash of the resolved content (tombstones included), order-independent."""
        norm = self.normalized()
        return hashlib.blake2b(msgpack.packb(norm._canonical_obj()), digest_size=16).digest()

    def _canonical_obj(self) -> list[Any]:
        return [
            self.key,
            self.partition_tombstone,
            self.partition_deletion_time,
            [[n, *self.cells[n].to_obj()] for n in sorted(self.cells)],
            [[p, rt.timestamp, rt.local_deletion_time] for p, rt in sorted(self.range_tombstones.items())],
        ]

    def to_obj(self) -> list[Any]:
        """The msgpack-friendly form ``[key, pt, pdt, {name: cell_obj}, [[prefix, ts, ldt], ...]]``."""
        return [
            self.key,
            self.partition_tombstone,
            self.partition_deletion_time,
            {n: c.to_obj() for n, c in self.cells.items()},
            [[rt.prefix, rt.timestamp, rt.local_deletion_time] for rt in self.range_tombstones.values()],
        ]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> Partition:
        """Rebuild a partition from :meth:`to_obj` (as decoded by msgpack)."""
        key, pt, pdt, cells, rts = obj
        return cls(
            bytes(key),
            {n: Cell(n, v[0], v[1], v[2], v[3]) for n, v in cells.items()},
            pt,
            pdt,
            {r[0]: RangeTombstone(r[0], r[1], r[2]) for r in rts},
        )

    def serialize(self) -> bytes:
        """msgpack bytes of :meth:`to_obj`."""
        return msgpack.packb(self.to_obj(), use_bin_type=True)

    @classmethod
    def deserialize(cls, data: bytes) -> Partition:
        """Inverse of :meth:`serialize`."""
        return cls.from_obj(msgpack.unpackb(data, raw=False, strict_map_key=False))


@dataclass(slots=True)
class Mutation:
    """Every change to one partition in one write: cells, a row delete, super-column deletes."""

    key: bytes
    cells: list[Cell] = field(default_factory=list)
    partition_tombstone: int | None = None
    partition_deletion_time: int | None = None
    range_tombstones: list[RangeTombstone] = field(default_factory=list)

    def to_obj(self) -> list[Any]:
        """The same wire shape as :meth:`Partition.to_obj` (later cells of one name win on replay)."""
        return [
            self.key,
            self.partition_tombstone,
            self.partition_deletion_time,
            {c.name: c.to_obj() for c in self.cells},
            [[rt.prefix, rt.timestamp, rt.local_deletion_time] for rt in self.range_tombstones],
        ]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> Mutation:
        """Rebuild a mutation from :meth:`to_obj`."""
        key, pt, pdt, cells, rts = obj
        return cls(
            bytes(key),
            [Cell(n, v[0], v[1], v[2], v[3]) for n, v in cells.items()],
            pt,
            pdt,
            [RangeTombstone(r[0], r[1], r[2]) for r in rts],
        )

    def to_partition(self) -> Partition:
        """The partition this mutation alone would produce (duplicate names reconciled)."""
        cells: dict[str, Cell] = {}
        for c in self.cells:
            mine = cells.get(c.name)
            cells[c.name] = c if mine is None else reconcile(mine, c)
        rts: dict[str, RangeTombstone] = {}
        for rt in self.range_tombstones:
            mine_rt = rts.get(rt.prefix)
            rts[rt.prefix] = rt if mine_rt is None else _reconcile_rt(mine_rt, rt)
        return Partition(self.key, cells, self.partition_tombstone, self.partition_deletion_time, rts)


def _merge_partition_tombstone(
    a_ts: int | None, a_ldt: int | None, b_ts: int | None, b_ldt: int | None
) -> tuple[int | None, int | None]:
    if a_ts is None:
        return b_ts, b_ldt
    if b_ts is None or a_ts > b_ts:
        return a_ts, a_ldt
    if b_ts > a_ts:
        return b_ts, b_ldt
    return a_ts, max(a_ldt or 0, b_ldt or 0) if (a_ldt is not None or b_ldt is not None) else None


def _reconcile_rt(a: RangeTombstone, b: RangeTombstone) -> RangeTombstone:
    if a.timestamp != b.timestamp:
        return a if a.timestamp > b.timestamp else b
    return a if (a.local_deletion_time or 0) >= (b.local_deletion_time or 0) else b


def merge_all(parts: Iterable[Partition]) -> Partition | None:
    """Merge any number of versions of one partition; ``None`` when there are none."""
    result: Partition | None = None
    for p in parts:
        result = p if result is None else result.merge(p)
    return result.normalized() if result is not None else None
