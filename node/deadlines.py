"""A timing wheel: many deadlines fired by one task, instead of a cancel scope per request.

Entering and leaving a Trio cancel scope with a deadline costs about 7 µs (a heap insert and
removal in the run loop), more than the rest of a replica's apply; a write that almost always
finishes long before its timeout only needs a flag set if it did not. Deadlines are kept in
buckets of ``resolution`` seconds and a bucket fires when it ends: never early, at most one
resolution late. Time is Trio's clock, so the simulator's virtual clock drives it too.

What finished in time cancels its deadline (:meth:`TimingWheel.cancel`): then nothing of it stays
alive until the deadline (a write's whole state would otherwise survive its timeout in a bucket,
and every young collection of the cyclic GC walked those), and a bucket whose deadlines all
finished is never woken for.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio

# Timeouts are seconds; firing up to 10 ms late changes nothing a caller can tell, and at
# thousands of deadlines per second one wake-up per 10 ms bucket is all the reaper costs.
DEFAULT_RESOLUTION_S = 0.01


# What add() returns for cancel(): (bucket, entry number).
Handle = tuple[int, int]


class TimingWheel:
    """``add(deadline, fn, arg)`` calls ``fn(arg)`` once the deadline passed, from :meth:`run`,
    unless :meth:`cancel` was called with what add returned."""

    def __init__(self, resolution: float = DEFAULT_RESOLUTION_S) -> None:
        self._resolution = resolution
        self._buckets: dict[int, dict[int, tuple[Callable[[Any], None], Any]]] = {}
        self._heap: list[int] = []
        self._ids = itertools.count()
        self._scope: trio.CancelScope | None = None
        self.running = False

    def add(self, deadline: float, fn: Callable[[Any], None], arg: Any) -> Handle | None:
        """Call ``fn(arg)`` at ``deadline`` (Trio time); an infinite deadline is never called (None)."""
        if math.isinf(deadline):
            return None
        slot = math.ceil(deadline / self._resolution)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = {}
            heapq.heappush(self._heap, slot)
            ends = slot * self._resolution
            if self._scope is not None and ends < self._scope.deadline:
                self._scope.deadline = ends
        n = next(self._ids)
        bucket[n] = (fn, arg)
        return slot, n

    def cancel(self, handle: Handle | None) -> None:
        """Forget one deadline (it finished in time); nothing for one already fired or cancelled."""
        if handle is None:
            return
        bucket = self._buckets.get(handle[0])
        if bucket is not None:
            bucket.pop(handle[1], None)
            if not bucket:
                del self._buckets[handle[0]]  # its heap entry is skipped when it comes up

    def _next_deadline(self) -> float:
        heap = self._heap
        while heap and heap[0] not in self._buckets:
            heapq.heappop(heap)
        return heap[0] * self._resolution if heap else math.inf

    async def run(self) -> None:
        """Fire deadlines as they pass, until cancelled (then nothing left is ever called)."""
        self.running = True
        try:
            while True:
                with trio.CancelScope(deadline=self._next_deadline()) as scope:
                    self._scope = scope
                    await trio.sleep_forever()
                self._scope = None
                now = trio.current_time()
                while self._heap and self._heap[0] * self._resolution <= now:
                    bucket = self._buckets.pop(heapq.heappop(self._heap), None)
                    if bucket:
                        for fn, arg in bucket.values():
                            fn(arg)
        finally:
            self.running = False
            self._scope = None
            self._buckets = {}
            self._heap = []
