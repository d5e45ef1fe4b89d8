"""An in-memory reference model of a table, written independently of the engine's merge code."""

from __future__ import annotations

from dataclasses import dataclass, field

from node.runtime import Clock


class ManualClock(Clock):
    """A wall clock the test moves by hand (the engine reads time only through its Clock)."""

    def __init__(self, start_s: int = 1_700_000_000) -> None:
        super().__init__()
        self.now_us = start_s * 1_000_000

    def wall_us(self) -> int:
        return self.now_us

    def advance(self, seconds: int) -> None:
        self.now_us += seconds * 1_000_000


@dataclass
class ModelCell:
    value: bytes | None
    ts: int
    expires: int | None  # seconds; only for TTL cells
    deleted_at: int | None = None  # seconds; only for tombstones


def _beats(new: ModelCell, old: ModelCell) -> bool:
    """The documented rule: timestamp; then tombstone > expiring > regular; then details; then value."""
    if new.ts != old.ts:
        return new.ts > old.ts

    def rank(c: ModelCell) -> tuple:
        if c.value is None:
            return (2, c.deleted_at or 0, b"")
        if c.expires is not None:
            return (1, -c.expires, c.value)
        return (0, 0, c.value)

    return rank(new) > rank(old)


@dataclass
class ModelPartition:
    cells: dict[str, ModelCell] = field(default_factory=dict)
    row_deleted: int | None = None
    prefix_deleted: dict[str, int] = field(default_factory=dict)


class TableModel:
    """What a table must answer: the latest version of each column, minus deletions and expiry."""

    def __init__(self) -> None:
        self.parts: dict[bytes, ModelPartition] = {}

    def _part(self, key: bytes) -> ModelPartition:
        return self.parts.setdefault(key, ModelPartition())

    def write(self, key: bytes, name: str, value: bytes | None, ts: int, ttl: int | None, now_s: int) -> None:
        new = ModelCell(value, ts, now_s + ttl if ttl is not None else None,
                        now_s if value is None else None)
        part = self._part(key)
        old = part.cells.get(name)
        if old is None or _beats(new, old):
            part.cells[name] = new

    def delete_row(self, key: bytes, ts: int) -> None:
        part = self._part(key)
        part.row_deleted = ts if part.row_deleted is None else max(part.row_deleted, ts)

    def delete_prefix(self, key: bytes, prefix: str, ts: int) -> None:
        part = self._part(key)
        part.prefix_deleted[prefix] = max(ts, part.prefix_deleted.get(prefix, ts))

    def live(self, key: bytes, now_s: int) -> dict[str, bytes]:
        """Visible column values of one partition at ``now_s``."""
        part = self.parts.get(key)
        if part is None:
            return {}
        out = {}
        for name, c in part.cells.items():
            if c.value is None:
                continue
            if c.expires is not None and now_s >= c.expires:
                continue
            if part.row_deleted is not None and c.ts <= part.row_deleted:
                continue
            if any(name.startswith(p) and c.ts <= ts for p, ts in part.prefix_deleted.items()):
                continue
            out[name] = c.value
        return out
