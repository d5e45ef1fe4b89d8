"""The nemesis schedule fits several fault windows of every nemesis into the time limit."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from nemesis import faults
from nemesis.faults import Event, Schedule


class Fake:
    """A nemesis whose steps take ``step_s`` of (virtual) time."""

    def __init__(self, name: str, step_s: float = 0.0) -> None:
        self.name, self.step_s = name, step_s

    async def start(self, rng: random.Random) -> Event:
        await trio.sleep(self.step_s)
        return Event(f"start-{self.name}", None)

    async def stop(self) -> Event:
        await trio.sleep(self.step_s)
        return Event(f"stop-{self.name}", None)

    async def heal(self) -> None:
        return None


def _windows(nemeses: list[Fake], time_limit: float, interval: float | None = None) -> list[tuple[float, str, str]]:
    """Run a schedule for ``time_limit`` virtual seconds; the (time, type, f) of each step completed."""
    steps: list[tuple[float, str, str]] = []

    async def main() -> None:
        t0 = trio.current_time()

        def record(type_: str, f: str, value: Any, action: str | None, ring_change: bool = False) -> None:
            if type_ == "info":
                steps.append((trio.current_time() - t0, type_, f))

        sched = Schedule(nemeses, interval, random.Random(1), record, time_limit=time_limit)  # type: ignore[arg-type]
        async with trio.open_nursery() as n:
            n.start_soon(sched.run)
            await trio.sleep(time_limit)
            await sched.finish(60)
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return steps


@pytest.mark.parametrize("step_s", [0.0, 1.5])
def test_three_windows_of_each_nemesis_fit_in_30_seconds(step_s: float) -> None:
    # Kill, pause and partition: a restart takes time (step_s); the sleeps after it absorb it.
    steps = _windows([Fake("kill", step_s), Fake("pause"), Fake("partition")], 30.0)
    started = [f for t, _, f in steps if f.startswith("start-") and t <= 30.0]
    stopped = [f for t, _, f in steps if f.startswith("stop-") and t <= 30.0 + step_s]
    for name in ("kill", "pause", "partition"):
        assert started.count(f"start-{name}") >= faults.WINDOWS_PER_NEMESIS, steps
        assert stopped.count(f"stop-{name}") >= faults.WINDOWS_PER_NEMESIS, steps
    gaps = [b[0] - a[0] for a, b in zip(steps, steps[1:])]
    assert min(gaps) >= faults.MIN_AUTO_INTERVAL_S - 1e-9


def test_a_long_campaign_keeps_cycling_at_most_ten_seconds_apart() -> None:
    steps = _windows([Fake("partition")], 300.0)
    assert len([s for s in steps if s[2] == "start-partition"]) >= 14
    assert max(b[0] - a[0] for a, b in zip(steps, steps[1:])) <= faults.MAX_AUTO_INTERVAL_S + 1e-9


def test_a_fixed_interval_is_kept_and_described() -> None:
    steps = _windows([Fake("partition")], 20.0, interval=3.0)
    assert [round(t, 6) for t, _, _ in steps][:4] == [3.0, 6.0, 9.0, 12.0]
    sched = Schedule([], 3.0, random.Random(0), lambda *a: None)
    assert sched.describe() == {"mode": "fixed", "interval_s": 3.0}
    fit = Schedule([Fake("kill")], None, random.Random(0), lambda *a: None, time_limit=30)  # type: ignore[list-item]
    assert fit.describe()["planned_windows"] == faults.WINDOWS_PER_NEMESIS
    with pytest.raises(ValueError):
        Schedule([], None, random.Random(0), lambda *a: None)
