"""Jepsen's set-full: adds of unique elements to a set per key, reads of the whole set.

Each element is a column of the key's row (the way a Cassandra set collection is stored: one
cell per element), so an add is a single-cell write and never overwrites another add.
"""

from __future__ import annotations

import random

from harness.client import Completion
from harness.workloads import KEYSPACE, Invocation, WorkloadSettings
from node.client import Client

# Mostly adds, with enough reads to see when each element becomes stably visible.
READ_FRACTION = 0.2


def _column(element: int) -> str:
    return f"e{element:09d}"


class SetWorkload:
    """Adds of unique integers to a few sets, and reads of them."""

    name = "set"
    table = "sets"
    model = "set"

    def __init__(self, settings: WorkloadSettings) -> None:
        self.settings = settings
        self.keys = list(range(settings.key_count))
        self.next_element = 0

    def next_op(self, rng: random.Random) -> Invocation:
        """An add of the next element to a random set, or a read of one."""
        key = rng.choice(self.keys)
        if rng.random() < READ_FRACTION:
            return Invocation("read", key)
        self.next_element += 1
        return Invocation("add", key, self.next_element)

    def is_write(self, op: Invocation) -> bool:
        """Adds have side effects."""
        return op.f == "add"

    async def apply(self, client: Client, op: Invocation, cl: str | None = None) -> Completion:
        """Add one element (one cell) or read the set's elements in order."""
        if op.f == "add":
            ts = await client.put(KEYSPACE, self.table, op.key, {_column(op.value): 1},
                                  consistency=cl or self.settings.write_cl)
            return Completion("ok", op.value, timestamp=ts)
        row = await client.get(KEYSPACE, self.table, op.key, consistency=cl or self.settings.read_cl)
        return Completion("ok", sorted(int(name[1:]) for name in row))

    def final_ops(self) -> list[Invocation]:
        """A read of every set."""
        return [Invocation("read", k) for k in self.keys]
