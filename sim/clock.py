"""Virtual time: one MockClock for the whole world, and each node's skewable view of it."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio

from node.runtime import Clock

# Trio's own sleeps, kept before :func:`patch_trio_sleeps` replaces them in a simulation.
_TRIO_SLEEP = trio.sleep
_TRIO_SLEEP_UNTIL = trio.sleep_until
_TRIO_CURRENT_TIME = trio.current_time

# The wall-clock reading at virtual time 0 (2026-01-01T00:00:00Z): fixed, so last-write-wins
# timestamps and every byte that carries them are the same in every run of a seed.
EPOCH_US = 1_767_225_600_000_000


class SimClock(Clock):
    """A node's clock over virtual time: same skew rules (offset, rate) as the real Clock."""

    def __init__(self) -> None:
        # Made inside the world's run: read the world clock's time directly (the node reads
        # its clock several times per request; trio.current_time() is three calls deep).
        clock = trio.lowlevel.current_clock()
        self._world = clock if isinstance(clock, WorldClock) else None
        super().__init__()

    def _now(self) -> float:
        world = self._world
        return world._now if world is not None else trio.current_time()

    def _real_us(self) -> int:
        return EPOCH_US + int(self._now() * 1_000_000)

    def monotonic(self) -> float:
        """Virtual seconds since the world started."""
        return self._now()

    async def sleep(self, seconds: float) -> None:
        """Sleep in virtual time on the world clock's timers (cheaper than a cancel scope)."""
        await sleep(seconds)


class WorldClock(trio.abc.Clock):
    """Virtual time for one ``trio.run``: whenever no task can run, jump straight to the next
    timer (Trio's public Clock interface; what MockClock's autojump_threshold=0 does, minus its
    zero-timeout I/O poll, which the simulated world never needs), recording each jump in the trace.

    It also keeps the world's own timers (:meth:`call_at`): the network's deliveries and the
    nodes' sleeps. Each is a heap entry and a callback run when time reaches it, instead of a
    Trio cancel scope with a deadline, which costs several times more to enter, expire and leave
    (docs/sim.md, *Speed*). They fire only when no task can run, as Trio's deadlines do under
    this clock, so the order of events is as deterministic as before.
    """

    def __init__(self, trace: Any) -> None:
        self.trace = trace
        if hasattr(trace, "clock"):
            trace.clock = self  # the trace stamps its events with this clock's time
        self._now = 0.0
        self.jumps = 0
        # [when, sequence, callback or None once cancelled]: the sequence orders equal instants.
        self._timers: list[list[Any]] = []
        self._seq = itertools.count()

    def call_at(self, when: float, fn: Callable[[], None]) -> list[Any]:
        """Run ``fn()`` (synchronous: it may reschedule tasks) once virtual time reaches ``when``;
        returns a handle for :func:`cancel_timer`."""
        entry = [when, next(self._seq), fn]
        heapq.heappush(self._timers, entry)
        return entry

    def start_clock(self) -> None:
        """Virtual time starts at 0."""

    def current_time(self) -> float:
        """Virtual seconds since the run started."""
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Called only when no task is runnable: advance to ``deadline`` and sleep not at all."""
        timers = self._timers
        while timers and timers[0][2] is None:
            heapq.heappop(timers)  # cancelled: must not make time jump
        if timers and timers[0][0] < deadline:
            deadline = timers[0][0]
        if deadline == math.inf:
            # Nothing will ever wake: every task waits forever (a deadlock, or the run's end).
            return math.inf
        if deadline > self._now:
            self._now = deadline
            self.jumps += 1
            self.trace.add("jump")
        now = self._now
        while timers and timers[0][0] <= now:
            fn = heapq.heappop(timers)[2]
            if fn is not None:
                fn()
        return 0.0


def cancel_timer(handle: list[Any]) -> None:
    """Forget a timer of :meth:`WorldClock.call_at` (it stays in the heap, inert)."""
    handle[2] = None


async def sleep_until(when: float) -> None:
    """``trio.sleep_until`` on the world clock's timers: no cancel scope, still cancellable."""
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, WorldClock):
        await _TRIO_SLEEP_UNTIL(when)
        return
    if when <= clock._now:
        await trio.lowlevel.checkpoint()
        return
    task = trio.lowlevel.current_task()

    def fire() -> None:
        trio.lowlevel.reschedule(task)

    handle = clock.call_at(when, fire)

    def abort(_: Any) -> trio.lowlevel.Abort:
        cancel_timer(handle)
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)


async def sleep(seconds: float) -> None:
    """``trio.sleep`` on the world clock's timers."""
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    await sleep_until(trio.current_time() + seconds)


def patch_trio_sleeps(clock: WorldClock | None = None) -> Callable[[], None]:
    """Make ``trio.sleep`` and ``trio.sleep_until`` use the world clock's timers for the code that
    calls them through the ``trio`` module (node/ and the harness's generator), for the length of
    a simulation; returns the function that puts Trio's back. Outside a WorldClock run they
    behave as Trio's own.

    Given the run's ``clock``, ``trio.current_time`` reads it directly too (the same value, one
    call instead of three: node code and the harness read the time tens of thousands of times a
    seed); call it only around the ``trio.run`` that uses that clock.
    """
    trio.sleep = sleep  # type: ignore[assignment]
    trio.sleep_until = sleep_until  # type: ignore[assignment]
    if clock is not None:
        trio.current_time = clock.current_time  # type: ignore[assignment]

    def undo() -> None:
        trio.sleep = _TRIO_SLEEP  # type: ignore[assignment]
        trio.sleep_until = _TRIO_SLEEP_UNTIL  # type: ignore[assignment]
        trio.current_time = _TRIO_CURRENT_TIME  # type: ignore[assignment]

    return undo
