"""The simulator's cheaper paths do exactly what the code they replace did.

A speed-up of the simulation must not change any seed's schedule (docs/sim.md, *Speed*): the
batch shuffle must draw and swap as ``random.Random.shuffle`` does. (The connection writers'
wake-ups are tests/unit/test_outbox.py's.)
"""

from __future__ import annotations

import random

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
