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

from harness.client import Completion
from harness.workloads import KEYSPACE, Invocation
from harness.workloads.register import RegisterWorkload
from node.client import Client

# Four columns per batch, as in Jepsen's Cassandra batch tests: enough for a torn row to show.
COLUMNS = ("c0", "c1", "c2", "c3")


class BatchWorkload(RegisterWorkload):
    """Batches of every column of a row, and whole-row reads, on a rotating set of rows.

    Keys, reads, deletes and unique values are drawn as :class:`RegisterWorkload` draws them (the
    same seed gives the same operation stream); only what a write is differs.
    """

    name = "batch"
    table = "batches"
    model = "batch"

    def write_of(self, key: int, value: int) -> Invocation:
        """A batch setting every column of the row to ``value``."""
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
