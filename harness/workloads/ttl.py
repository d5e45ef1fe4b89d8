"""Register writes that expire: reads and writes of unique values per key, most writes with a TTL.

The register workload (unique values 1, 2, 3, ... per key, reads at the read level, optional
deletes) with each write's time to live drawn from :data:`TTLS_S`: a few seconds, so values
expire *during* the campaign and expiry meets every data path (memtable, SSTables, compaction
turning expired cells into tombstones, hints, read repair, streaming), and some writes with no
TTL, so regular and expiring cells of one key reconcile. The completion records the TTL a write
carried (``ttl`` in the history line; absent for none).

Judged by :mod:`checkers.ttl`: a coordinator stamps a write with its clock ``w`` (the returned
timestamp, µs) and gives the cell a local deletion time of ``floor(w) + ttl`` seconds on the same
clock, and a read filters cells expired at its own clock, so every value's expiry instant is known
from the write's timestamp. Linearizability does not hold (a value vanishes without a write), so
the register checkers are not run.
"""

from __future__ import annotations

import random

from harness.client import Completion
from harness.workloads import KEYSPACE, Invocation
from harness.workloads.register import COLUMN, RegisterWorkload
from node.client import Client

# Times to live in seconds (None: no TTL). One to three seconds, with READ_FRACTION of reads: at
# 200 operations a second over 20-60 keys a key takes a write every 1-3 s and a read every
# 0.1-0.3 s, so many values expire before the next write lands, reads fall both sides of each expiry (and within
# a second of it, so an expiry a whole second early or late shows), and a 24 s campaign sees
# expired cells flushed, compacted and turned into tombstones; one write in four never expires.
TTLS_S: tuple[int | None, ...] = (1, 2, 3, None)
# Reads dominate: what is judged is when a value stops being visible, which only reads see.
READ_FRACTION = 0.9


class TtlWorkload(RegisterWorkload):
    """Unique-value register writes with a TTL drawn per write, and reads, on rotating keys."""

    name = "ttl"
    table = "registers"
    model = "ttl"

    @staticmethod
    def ttl_of(value: int) -> int | None:
        """The TTL the write of ``value`` carries (a function of the value, so replays agree)."""
        return TTLS_S[value % len(TTLS_S)]

    def next_op(self, rng: random.Random) -> Invocation:
        """A read (READ_FRACTION of them), else a write or delete as the register workload draws them."""
        key = self.keys.pick(rng)
        if rng.random() < READ_FRACTION:
            return Invocation("read", key)
        if self.delete_fraction and rng.random() < self.delete_fraction:
            return Invocation("delete", key)
        return self.write_of(key, self.fresh_value(key, rng))

    async def apply(self, client: Client, op: Invocation, cl: str | None = None) -> Completion:
        """Perform a read, a write with its TTL, or a delete."""
        if op.f == "write":
            ttl = self.ttl_of(op.value)
            ts = await client.put(KEYSPACE, self.table, op.key, {COLUMN: op.value},
                                  consistency=cl or self.settings.write_cl, ttl=ttl)
            return Completion("ok", op.value, timestamp=ts, extra={"ttl": ttl} if ttl is not None else {})
        return await super().apply(client, op, cl)
