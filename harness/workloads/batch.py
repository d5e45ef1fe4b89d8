"""Jepsen's write-isolation test: batches that set every column of a row to one value.

Each ``batch`` sets all :data:`COLUMNS` of one row to the key's next unique value in one batch
request (one put per column, as a CQL batch of several updates), which the store applies as one
mutation per replica. Reads return the whole row with each cell's timestamp. The isolation
checker (``checkers.isolation``) reports any read that shows columns of two batches; the
register checkers judge each row as a register whose value is the whole row. With
``--delete-fraction F`` (default 0, Jepsen's test has none) that share of the batches instead
delete the row (a batch of one row delete, recorded as ``f: delete``), so reads see the row
vanish whole, too.
"""

from __future__ import annotations

import random

from harness.client import Completion
from harness.workloads import KEYSPACE, Invocation, WorkloadSettings
from harness.workloads.register import KeyRotation
from node.client import Client

# Four columns per batch, as in Jepsen's Cassandra batch tests: enough for a torn row to show.
COLUMNS = ("c0", "c1", "c2", "c3")
READ_FRACTION = 0.5


class BatchWorkload:
    """Batches of every column of a row, and whole-row reads, on a rotating set of rows."""

    name = "batch"
    table = "batches"
    model = "batch"

    def __init__(self, settings: WorkloadSettings) -> None:
        self.settings = settings
        self.keys = KeyRotation(settings.key_count, settings.ops_per_key)
        self.next_value: dict[int, int] = {}
        self.delete_fraction = settings.delete_fraction or 0.0

    def next_op(self, rng: random.Random) -> Invocation:
        """A whole-row read, or a batch setting every column to the key's next value."""
        key = self.keys.pick(rng)
        if rng.random() < READ_FRACTION:
            return Invocation("read", key)
        if self.delete_fraction and rng.random() < self.delete_fraction:
            return Invocation("delete", key)
        value = self.next_value.get(key, 0) + 1
        self.next_value[key] = value
        return Invocation("batch", key, {c: value for c in COLUMNS})

    def is_write(self, op: Invocation) -> bool:
        """Batches (and row-deleting batches) have side effects."""
        return op.f in ("batch", "delete")

    async def apply(self, client: Client, op: Invocation, cl: str | None = None) -> Completion:
        """Apply one batch (a put per column) or read the row with each cell's timestamp."""
        if op.f == "batch":
            mutations = [{"op": "put", "columns": {c: v}} for c, v in op.value.items()]
            ts = await client.batch(KEYSPACE, self.table, op.key, mutations, consistency=cl or self.settings.write_cl)
            return Completion("ok", op.value, timestamp=ts)
        if op.f == "delete":
            ts = await client.batch(KEYSPACE, self.table, op.key, [{"op": "delete"}],
                                    consistency=cl or self.settings.write_cl)
            return Completion("ok", None, timestamp=ts)
        row = await client.get(KEYSPACE, self.table, op.key, consistency=cl or self.settings.read_cl)
        return Completion("ok", {c: v for c, (v, _ts) in sorted(row.items())},
                          extra={"timestamps": {c: ts for c, (_v, ts) in sorted(row.items())}})

    def final_ops(self) -> list[Invocation]:
        """A read of every row ever used."""
        return [Invocation("read", k) for k in self.keys.used]
