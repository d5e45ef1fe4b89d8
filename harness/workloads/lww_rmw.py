"""Read-modify-write increments under last-write-wins, as Jepsen's first Cassandra test did.

Each ``incr`` reads the counter and writes the value read plus one. Two increments that read the
same value both succeed, and last-write-wins silently keeps one: a lost update. The counter
checker compares the final value with the number of acknowledged increments.
"""

from __future__ import annotations

import random

from harness.client import Completion
from harness.workloads import KEYSPACE, Invocation, WorkloadSettings
from node.client import Client

COLUMN = "n"
# Few reads: the interesting operation is the increment; the final read decides.
READ_FRACTION = 0.1


class LwwRmwWorkload:
    """Client-side increments of a few counters."""

    name = "lww-rmw"
    table = "counters"
    model = "counter"

    def __init__(self, settings: WorkloadSettings) -> None:
        self.settings = settings
        self.keys = list(range(settings.key_count))

    def next_op(self, rng: random.Random) -> Invocation:
        """An increment or a read of a random counter."""
        key = rng.choice(self.keys)
        return Invocation("read" if rng.random() < READ_FRACTION else "incr", key)

    def is_write(self, op: Invocation) -> bool:
        """Increments write."""
        return op.f == "incr"

    async def apply(self, client: Client, op: Invocation, cl: str | None = None) -> Completion:
        """Read the counter, then write it plus one; the value recorded is [read, written]."""
        row = await client.get(KEYSPACE, self.table, op.key, columns=[COLUMN],
                               consistency=cl or self.settings.read_cl)
        current = row[COLUMN][0] if COLUMN in row else 0
        if op.f == "read":
            return Completion("ok", current, timestamp=row[COLUMN][1] if COLUMN in row else None)
        ts = await client.put(KEYSPACE, self.table, op.key, {COLUMN: current + 1},
                              consistency=cl or self.settings.write_cl)
        return Completion("ok", [current, current + 1], timestamp=ts)

    def final_ops(self) -> list[Invocation]:
        """A read of every counter."""
        return [Invocation("read", k) for k in self.keys]
