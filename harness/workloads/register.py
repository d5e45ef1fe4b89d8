"""Single-register reads and writes of unique values, on a rotating set of keys.

Checked for linearizability (register model), last-write-wins anomalies and quorum guarantees.
Values are unique per key (1, 2, 3, ...) so every read names exactly one write; with
``--value-order random`` they are unique random numbers instead, so the value order says nothing
about the time order (a reconcile that prefers the larger value where the timestamp must decide
then loses newer writes). With
``--delete-fraction F`` that share of the writes are deletes of the key (a row delete, so a
tombstone): a read after one returns nil, and a deleted value that comes back is a resurrection.
With ``--client-timestamps`` the client stamps each write and delete itself (CQL's ``USING
TIMESTAMP``) from a coarse clock: the time in CLIENT_TS_BUCKET_US steps plus a jitter of a few
microseconds, so writes to a key in one step often carry equal timestamps (the tie-break decides)
or ones a microsecond apart (the timestamp decides, within one millisecond);
checkers/lww_order.py knows every write's timestamp and judges which version must win.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import trio

from harness.client import Completion
from harness.workloads import KEYSPACE, Invocation, WorkloadSettings
from node.client import Client

# The share of operations that are reads; Jepsen's register tests mix reads and writes evenly.
READ_FRACTION = 0.5
COLUMN = "v"
# Random values are drawn below this: small enough to read in a history, large enough that
# redraws for a key's few hundred values are rare.
RANDOM_VALUE_BOUND = 1 << 20
# Client timestamps: a clock of one-second resolution (as applications stamping with epoch
# seconds), so a step holds a few writes to each key at campaign rates (100 writes/s over tens of
# keys), and a jitter of 0..2 µs makes a third of them tie and the rest differ by a microsecond
# or two, inside one millisecond.
CLIENT_TS_BUCKET_US = 1_000_000
CLIENT_TS_JITTER_US = 3


@dataclass(frozen=True)
class StampedInvocation(Invocation):
    """A write or delete that carries the jitter of its client timestamp (drawn with the op)."""

    jitter_us: int = 0


def client_timestamp(now_s: float, jitter_us: int) -> int:
    """The coarse client clock: ``now_s`` in CLIENT_TS_BUCKET_US steps, plus the jitter (µs)."""
    return int(now_s * 1_000_000) // CLIENT_TS_BUCKET_US * CLIENT_TS_BUCKET_US + jitter_us


class KeyRotation:
    """``key_count`` active keys; a key that has seen ``ops_per_key`` operations is replaced."""

    def __init__(self, key_count: int, ops_per_key: int) -> None:
        self.ops_per_key = ops_per_key
        self.active = list(range(key_count))
        self.next_key = key_count
        self.ops: dict[int, int] = {k: 0 for k in self.active}
        self.used: list[int] = list(self.active)

    def pick(self, rng: random.Random) -> int:
        """A key to operate on, retiring it for a fresh one once it is full."""
        slot = rng.randrange(len(self.active))
        key = self.active[slot]
        self.ops[key] += 1
        if self.ops[key] >= self.ops_per_key:
            self.active[slot] = self.next_key
            self.ops[self.next_key] = 0
            self.used.append(self.next_key)
            self.next_key += 1
        return key


class RegisterWorkload:
    """Reads and writes of unique values per key."""

    name = "register"
    table = "registers"
    model = "register"

    def __init__(self, settings: WorkloadSettings) -> None:
        self.settings = settings
        self.keys = KeyRotation(settings.key_count, settings.ops_per_key)
        self.next_value: dict[int, int] = {}
        self.delete_fraction = settings.delete_fraction or 0.0
        self.random_values = getattr(settings, "value_order", "increasing") == "random"
        self.taken: dict[int, set[int]] = {}
        self.client_timestamps = bool(getattr(settings, "client_timestamps", False))

    def next_op(self, rng: random.Random) -> Invocation:
        """A read or a write of the key's next unique value."""
        key = self.keys.pick(rng)
        if rng.random() < READ_FRACTION:
            return Invocation("read", key)
        if self.delete_fraction and rng.random() < self.delete_fraction:
            op = Invocation("delete", key)
        else:
            op = self.write_of(key, self.fresh_value(key, rng))
        if self.client_timestamps:
            return StampedInvocation(op.f, op.key, op.value, rng.randrange(CLIENT_TS_JITTER_US))
        return op

    def fresh_value(self, key: int, rng: random.Random) -> int:
        """A value never written to ``key`` before: the next integer, or a random unused one."""
        if not self.random_values:
            value = self.next_value.get(key, 0) + 1
            self.next_value[key] = value
            return value
        taken = self.taken.setdefault(key, set())
        while True:
            value = rng.randrange(1, RANDOM_VALUE_BOUND)
            if value not in taken:
                taken.add(value)
                return value

    def write_of(self, key: int, value: int) -> Invocation:
        """The write that gives ``key`` its next unique ``value``."""
        return Invocation("write", key, value)

    def is_write(self, op: Invocation) -> bool:
        """Writes and deletes have side effects."""
        return op.f in ("write", "delete")

    async def apply(self, client: Client, op: Invocation, cl: str | None = None) -> Completion:
        """Perform a read or write at the workload's consistency levels."""
        # The client's own timestamp (virtual time in sim), or None: the coordinator stamps it.
        stamp = ({"timestamp": client_timestamp(trio.current_time(), op.jitter_us)}
                 if isinstance(op, StampedInvocation) else {})
        if op.f == "write":
            ts = await client.put(KEYSPACE, self.table, op.key, {COLUMN: op.value},
                                  consistency=cl or self.settings.write_cl, **stamp)
            return Completion("ok", op.value, timestamp=ts)
        if op.f == "delete":
            ts = await client.delete(KEYSPACE, self.table, op.key, consistency=cl or self.settings.write_cl, **stamp)
            return Completion("ok", None, timestamp=ts)
        row: dict[str, tuple[Any, int]] = await client.get(
            KEYSPACE, self.table, op.key, columns=[COLUMN], consistency=cl or self.settings.read_cl)
        if COLUMN in row:
            value, ts = row[COLUMN]
            return Completion("ok", value, timestamp=ts)
        return Completion("ok", None)

    def final_ops(self) -> list[Invocation]:
        """A read of every key (row) ever used."""
        return [Invocation("read", k) for k in self.keys.used]
