"""Client operation streams: processes, concurrency, rate, and the history they record.

Jepsen's process model: a worker runs one operation at a time under a process id. An operation
that ends ``info`` leaves its process forever pending (the operation may still take effect), so
the worker continues under a fresh process id (old id + concurrency), exactly as Jepsen does.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from harness.client import CONNECTION_REFUSED, Completion, NodeConnection
from harness.history import NEMESIS, HistoryWriter, Op
from harness.workloads import Invocation, Workload


class Recorder:
    """Appends every invocation and completion to the history as it happens, and counts them."""

    def __init__(self, writer: HistoryWriter, clock_ns: Callable[[], int] | None = None) -> None:
        self.writer = writer
        # harness sim passes virtual time, so a seed's history is the same in every run.
        self._clock_ns = clock_ns or time.monotonic_ns
        self.t0 = self._clock_ns()
        self.index = 0
        self.counts: Counter[str] = Counter()
        self.completed_times: list[float] = []
        # The highest client process recorded: a worker's process moves up by the concurrency
        # after each info, so later workers (the final reads) start above it (see final_reads).
        self.max_process = -1

    def now_ns(self) -> int:
        """Nanoseconds since the test started."""
        return self._clock_ns() - self.t0

    def record(self, process: int | str, type_: str, f: str, key: Any = None, value: Any = None,
               **fields: Any) -> Op:
        """Append one operation (flushed at once, so an interrupted run keeps it)."""
        extra = fields.pop("extra", None) or {}
        op = Op(self.index, self.now_ns(), process, type_, f, key, value,
                fields.get("node"), fields.get("cl"), fields.get("timestamp"), fields.get("error"), extra)
        self.index += 1
        self.writer.write(op)
        if process != NEMESIS:
            self.counts[type_] += 1
            if isinstance(process, int) and process > self.max_process:
                self.max_process = process
        return op

    def nemesis(self, type_: str, f: str, value: Any, action: str | None, ring_change: bool = False) -> None:
        """Record a nemesis operation; a completion says whether it may have changed the ring
        (``ring_change``, checkers/misplaced.py), an invocation says nothing."""
        extra: dict[str, Any] = {"action": action} if action else {}
        if type_ != "invoke":
            extra["ring_change"] = ring_change
        self.record(NEMESIS, type_, f, None, value, extra=extra or None)


@dataclass
class Rate:
    """Jepsen's stagger: a uniform delay in [0, 2 * concurrency / rate) before each operation."""

    ops_per_s: float | None
    concurrency: int

    def delay(self, rng: random.Random) -> float:
        """Seconds to wait before this worker's next operation."""
        if not self.ops_per_s:
            return 0.0
        return rng.uniform(0, 2 * self.concurrency / self.ops_per_s)


@dataclass
class Worker:
    """One client thread of the campaign: a connection to one node and a process id."""

    worker_id: int
    concurrency: int
    node_id: str
    conn: NodeConnection
    rng: random.Random
    # Called when this worker's node has left the ring: returns another node and a connection to it.
    relocate: Callable[[str], tuple[str, NodeConnection] | None] | None = None
    process: int = field(init=False)

    def __post_init__(self) -> None:
        self.process = self.worker_id

    async def perform(self, workload: Workload, op: Invocation, recorder: Recorder, cl: str,
                      extra: dict[str, Any] | None = None, apply_cl: str | None = None) -> Completion:
        """Invoke, perform and complete one operation in the history."""
        recorder.record(self.process, "invoke", op.f, op.key, op.value, node=self.node_id, cl=cl, extra=extra)
        done = await self.conn.run(lambda c: workload.apply(c, op, apply_cl), writes=workload.is_write(op))
        value = done.value if done.type == "ok" else op.value
        recorder.record(self.process, done.type, op.f, op.key, value, node=self.node_id, cl=cl,
                        timestamp=done.timestamp, error=done.error, extra={**(extra or {}), **done.extra})
        if done.type == "info":
            self.process += self.concurrency
        if done.error in ("ConnectionLost", CONNECTION_REFUSED) and self.relocate is not None:
            moved = self.relocate(self.node_id)
            if moved is not None:
                self.conn.close()
                self.node_id, self.conn = moved
        return done

    async def run(self, workload: Workload, recorder: Recorder, rate: Rate,
                  next_op: Callable[[], Invocation], cl_of: Callable[[Invocation], str],
                  stop: trio.Event | None = None) -> None:
        """Perform operations until ``stop`` is set (the open one completes first) or cancelled."""

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        while not stopping():
            conn = self.conn
            async with conn.session():
                while conn is self.conn and not stopping():
                    await trio.sleep(rate.delay(self.rng))
                    if stopping():
                        break
                    op = next_op()
                    await self.perform(workload, op, recorder, cl_of(op))


def parse_concurrency(text: str | int, node_count: int) -> int:
    """``10`` → 10, ``2n`` → 2 per node (Jepsen's notation); ValueError naming the bad text."""
    s = str(text).strip().lower()
    try:
        n = int(s[:-1]) * node_count if s.endswith("n") else int(s)
    except ValueError:
        raise ValueError(f"--concurrency must be a number or Nn (N per node), got {text!r}") from None
    if n < 1:
        raise ValueError(f"--concurrency must be at least 1, got {text!r}")
    return n
