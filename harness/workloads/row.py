"""Rows of several columns under column writes, column deletes and row deletes, read whole.

Each row (key) has :data:`COLUMNS` columns. A ``write`` sets one column to the key's next
unique value, a ``delete`` removes one column (value ``[column]``) or the whole row (value nil,
a partition tombstone), and a ``read`` returns the whole row with each cell's timestamp. The
checkers judge every cell (key, column) as a last-write-wins register (``checkers.cells``):
linearizability, lost writes and the other LWW anomalies, stale reads and resurrections.
"""

from __future__ import annotations

import random

from harness.client import Completion
from harness.workloads import KEYSPACE, Invocation, WorkloadSettings
from harness.workloads.register import KeyRotation
from node.client import Client

# Four cells per row: enough for a row delete to cover cells written at different times, few
# enough that a whole-row read stays one small response.
COLUMNS = ("c0", "c1", "c2", "c3")
# Reads of the whole row; the rest are writes or deletes.
READ_FRACTION = 0.4
# Without --delete-fraction: a third of the mutations delete (half a column, half the row), so
# every cell sees tombstones often.
DEFAULT_DELETE_FRACTION = 0.3


class RowWorkload:
    """Column writes, column deletes, row deletes and whole-row reads on a rotating set of rows."""

    name = "row"
    table = "rows"
    model = "row"

    def __init__(self, settings: WorkloadSettings) -> None:
        self.settings = settings
        self.keys = KeyRotation(settings.key_count, settings.ops_per_key)
        self.next_value: dict[int, int] = {}
        self.delete_fraction = (DEFAULT_DELETE_FRACTION if settings.delete_fraction is None
                                else settings.delete_fraction)

    def next_op(self, rng: random.Random) -> Invocation:
        """A whole-row read, a delete of a column or of the row, or a write of one column."""
        key = self.keys.pick(rng)
        if rng.random() < READ_FRACTION:
            return Invocation("read", key)
        if rng.random() < self.delete_fraction:
            return Invocation("delete", key, [rng.choice(COLUMNS)] if rng.random() < 0.5 else None)
        value = self.next_value.get(key, 0) + 1
        self.next_value[key] = value
        return Invocation("write", key, {rng.choice(COLUMNS): value})

    def is_write(self, op: Invocation) -> bool:
        """Writes and deletes have side effects."""
        return op.f in ("write", "delete")

    async def apply(self, client: Client, op: Invocation, cl: str | None = None) -> Completion:
        """Perform the operation; a read records the row and each cell's timestamp."""
        if op.f == "write":
            ts = await client.put(KEYSPACE, self.table, op.key, op.value, consistency=cl or self.settings.write_cl)
            return Completion("ok", op.value, timestamp=ts)
        if op.f == "delete":
            ts = await client.delete(KEYSPACE, self.table, op.key, columns=op.value,
                                     consistency=cl or self.settings.write_cl)
            return Completion("ok", op.value, timestamp=ts)
        row = await client.get(KEYSPACE, self.table, op.key, consistency=cl or self.settings.read_cl)
        return Completion("ok", {c: v for c, (v, _ts) in sorted(row.items())},
                          extra={"timestamps": {c: ts for c, (_v, ts) in sorted(row.items())}})

    def final_ops(self) -> list[Invocation]:
        """A read of every row ever used."""
        return [Invocation("read", k) for k in self.keys.used]
