"""Virtual time: one MockClock for the whole world, and each node's skewable view of it."""

from __future__ import annotations

import math
from typing import Any

import trio

from node.runtime import Clock

# The wall-clock reading at virtual time 0 (2026-01-01T00:00:00Z): fixed, so last-write-wins
# timestamps and every byte that carries them are the same in every run of a seed.
EPOCH_US = 1_767_225_600_000_000


class SimClock(Clock):
    """A node's clock over virtual time: same skew rules (offset, rate) as the real Clock."""

    def _real_us(self) -> int:
        return EPOCH_US + int(trio.current_time() * 1_000_000)

    def monotonic(self) -> float:
        """Virtual seconds since the world started."""
        return trio.current_time()


class WorldClock(trio.abc.Clock):
    """Virtual time for one ``trio.run``: whenever no task can run, jump straight to the next
    timer (Trio's public Clock interface; what MockClock's autojump_threshold=0 does, minus its
    zero-timeout I/O poll, which the simulated world never needs), recording each jump in the trace.
    """

    def __init__(self, trace: Any) -> None:
        self.trace = trace
        self._now = 0.0
        self.jumps = 0

    def start_clock(self) -> None:
        """Virtual time starts at 0."""

    def current_time(self) -> float:
        """Virtual seconds since the run started."""
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Called only when no task is runnable: advance to ``deadline`` and sleep not at all."""
        if deadline == math.inf:
            # Nothing will ever wake: every task waits forever (a deadlock, or the run's end).
            return math.inf
        if deadline > self._now:
            self._now = deadline
            self.jumps += 1
            self.trace.add("jump")
        return 0.0
