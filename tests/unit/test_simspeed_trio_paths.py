"""sim.scheduler's cheaper cancel-scope deadline bookkeeping behaves as Trio's own.

The same scenario of deadlines (fired, moved earlier and later, cancelled first, shielded,
nested, left before they fire) runs under the simulation's scheduling twice: with the
replacement of ``CancelScope._might_change_registered_deadline`` and with Trio's original.
What every task saw, and when, must be the same, and no deadline may be left registered.
"""

from __future__ import annotations

from typing import Any

import trio

from sim import scheduler
from sim.clock import WorldClock
from sim.trace import Trace


async def _scenario(log: list[Any]) -> None:
    def note(what: str) -> None:
        log.append((round(trio.current_time(), 6), what))

    async def fired() -> None:
        with trio.move_on_after(0.5) as s:
            await trio.sleep_forever()
        note(f"fired {s.cancelled_caught}")

    async def moved() -> None:
        with trio.CancelScope(deadline=trio.current_time() + 5) as s:
            s.deadline = trio.current_time() + 0.25  # earlier
            await trio.sleep(0.1)
            s.deadline += 1.0  # later
            await trio.sleep_forever()
        note(f"moved {s.cancelled_caught}")

    async def cancelled_first(scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        note(f"cancelled {scope.cancelled_caught}")

    async def shielded() -> None:
        with trio.move_on_after(0.2) as outer:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 0.6) as inner:
                await trio.sleep_forever()
            note(f"inner {inner.cancelled_caught}")
            await trio.sleep(0)
        note(f"outer {outer.cancelled_caught}")

    async def left_early() -> None:
        for i in range(50):
            with trio.move_on_after(10 + i):
                await trio.sleep(0.01)
        note("left early")

    async def nested() -> None:
        with trio.move_on_after(0.9) as a:
            with trio.move_on_after(0.3) as b:
                await trio.sleep_forever()
            note(f"nested inner {b.cancelled_caught}")
            await trio.sleep_forever()
        note(f"nested outer {a.cancelled_caught}")

    async with trio.open_nursery() as nursery:
        early = trio.CancelScope(deadline=trio.current_time() + 3)
        for fn in (fired, moved, shielded, left_early, nested):
            nursery.start_soon(fn)
        nursery.start_soon(cancelled_first, early)
        await trio.sleep(0.05)
        early.cancel()
    runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
    log.append(("active deadlines", runner.deadlines._active))


def _run(replace: bool) -> list[Any]:
    log: list[Any] = []
    undo = scheduler.make_deterministic(3)
    saved = trio._core._run.CancelScope._might_change_registered_deadline
    try:
        if not replace:
            trio._core._run.CancelScope._might_change_registered_deadline = scheduler._TRIO_DEADLINE_SYNC
        trio.run(_scenario, log, clock=WorldClock(Trace()))
    finally:
        trio._core._run.CancelScope._might_change_registered_deadline = saved
        undo()
    return log


def test_the_replacement_sees_what_trio_sees() -> None:
    ours, theirs = _run(True), _run(False)
    assert ours == theirs
    assert ("active deadlines", 0) in ours
    assert {w for _, w in ours} >= {"fired True", "moved True", "cancelled True", "inner True",
                                    "outer True", "left early", "nested inner True", "nested outer True"}
    # Outside a simulation Trio's own is back.
    assert trio._core._run.CancelScope._might_change_registered_deadline is scheduler._TRIO_DEADLINE_SYNC
