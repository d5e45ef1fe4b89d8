"""The simulator's cheaper paths do exactly what the code they replace did.

A speed-up of the simulation must not change any seed's schedule (docs/sim.md, *Speed*): the
batch shuffle must draw and swap as ``random.Random.shuffle`` does, and the messaging writers'
wake-up must wake the same task at the same point as Trio's ParkingLot.
"""

from __future__ import annotations

import random

import trio
import trio.testing

from node.cluster.messaging import _Wakeup
from sim.scheduler import _BatchShuffler


def test_batch_shuffle_is_random_shuffle_draw_for_draw() -> None:
    ours, theirs = _BatchShuffler(7), random.Random(7)
    for n in [0, 1, 2, 3, 5, 8, 17, 64, 200] * 20:
        a, b = list(range(n)), list(range(n))
        ours.shuffle(a)
        theirs.shuffle(b) if n > 1 else None  # a batch of one draws nothing
        assert a == b, n
        # And the generators stay in step for whatever Trio draws next.
        assert ours.random() == theirs.random()


def test_wakeup_wakes_one_waiter_at_a_time_in_order_and_forgets_a_cancelled_one() -> None:
    woken: list[str] = []

    async def main() -> None:
        lot = _Wakeup()
        lot.unpark()  # nobody waits: nothing happens

        async def waiter(name: str) -> None:
            await lot.park()
            woken.append(name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "a")
            await trio.testing.wait_all_tasks_blocked()
            gone = trio.CancelScope()

            async def cancelled() -> None:
                with gone:
                    await lot.park()
                woken.append("cancelled")

            nursery.start_soon(cancelled)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waiter, "c")
            await trio.testing.wait_all_tasks_blocked()
            gone.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert woken == ["cancelled"]  # its wait ended by cancellation, not by a wake-up
            lot.unpark()
            await trio.testing.wait_all_tasks_blocked()
            assert woken == ["cancelled", "a"]
            lot.unpark()
            await trio.testing.wait_all_tasks_blocked()
            assert woken == ["cancelled", "a", "c"]
            lot.unpark()  # nobody left: nothing happens

    trio.run(main)
