"""One nemesis window in a trio run: start with a seeded rng, then stop (the nemesis unit tests)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import trio


def start_then_stop(make: Callable[[], Any], seed: int) -> tuple[Any, Any]:
    """The start and stop events of the nemesis ``make()`` builds (built inside the run)."""

    async def main() -> tuple[Any, Any]:
        n = make()
        return await n.start(random.Random(seed)), await n.stop()

    return trio.run(main)
