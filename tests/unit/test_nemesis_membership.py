"""The nemesis schedule's rounds and the membership nemesis's random walk, against a fake
cluster (the real one is exercised by tests/e2e/test_campaigns.py)."""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing

from nemesis.faults import Event, Schedule
from nemesis.membership import MembershipNemesis


class FakeRing:
    """A cluster whose admin ops change its membership at once."""

    def __init__(self, n: int) -> None:
        self.members = [f"n{i}" for i in range(1, n + 1)]
        self.next_id = n + 1
        self.dead: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def node_ids(self) -> list[str]:
        return list(self.members)

    async def admin(self, node_id: str, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        self.calls.append((op, fields.get("node", node_id)))
        if op == "status":
            return {"nodes": [{"node_id": m, "status": "NORMAL", "state": "D" if m in self.dead else "U"}
                              for m in self.members]}
        if op == "netstats":
            return {"last": {"op": "join", "bytes": 10}}
        if op == "decommission":
            self.members.remove(node_id)
            return {"op": "decommission"}
        if op == "removenode":
            self.members.remove(fields["node"])
            return {"op": "removenode"}
        raise AssertionError(op)

    async def add_node(self) -> str:
        nid = f"n{self.next_id}"
        self.next_id += 1
        self.members.append(nid)
        return nid

    async def forget_node(self, node_id: str) -> None:
        self.dead.discard(node_id)

    async def kill(self, node_id: str) -> None:
        self.dead.add(node_id)

    async def restart(self, node_id: str) -> None:
        self.dead.discard(node_id)

    async def pause(self, node_id: str) -> None: ...

    async def resume(self, node_id: str) -> None: ...


def test_changes_walk_between_the_size_bounds_and_compound_in_one_direction() -> None:
    async def main() -> list[tuple[str, int]]:
        ring = FakeRing(4)
        nem = MembershipNemesis(ring, min_nodes=3, max_nodes=5)  # type: ignore[arg-type]
        rng = random.Random(5)
        walk = []
        for _ in range(20):
            event = await nem.start(rng)
            walk.append((event.f, len(ring.members)))
            event = await nem.stop()
            walk.append((event.f, len(ring.members)))
            assert "error" not in event.value, event
        return walk

    walk = trio.run(main)
    sizes = [n for _, n in walk]
    assert min(sizes) == 3 and max(sizes) == 5, walk
    assert {f for f, _ in walk} == {"join", "decommission", "removenode"}, walk
    # Two removals in a row (5 → 3) happen: the case that shows a missing stream at QUORUM.
    assert any(a in ("decommission", "removenode") and b in ("decommission", "removenode")
               for (a, _), (b, _) in zip(walk, walk[1:], strict=False)), walk


def test_no_change_is_possible_at_fixed_size() -> None:
    async def main() -> None:
        ring = FakeRing(3)
        nem = MembershipNemesis(ring, min_nodes=3, max_nodes=3)  # type: ignore[arg-type]
        start = await nem.start(random.Random(1))
        assert start.value["action"] == "none"
        stop = await nem.stop()
        assert stop.value["action"] == "none" and ring.node_ids() == ["n1", "n2", "n3"]

    trio.run(main)


class Counting:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def start(self, rng: random.Random) -> Event:
        self.log.append(self.name)
        return Event("start", None)

    async def stop(self) -> Event:
        return Event("stop", None)

    async def heal(self) -> None:
        return None


def test_schedule_runs_every_nemesis_once_per_round_in_varying_order() -> None:
    started: list[str] = []
    nemeses = [Counting(n, started) for n in ("membership", "partition", "kill")]

    async def main() -> None:
        sched = Schedule(nemeses, 0.0, random.Random(3), lambda *a: None)  # type: ignore[arg-type]
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sched.run)
                while len(started) < 30:
                    await trio.sleep(0)
                nursery.cancel_scope.cancel()

    trio.run(main)
    rounds = [started[i:i + 3] for i in range(0, 30, 3)]
    assert all(sorted(r) == ["kill", "membership", "partition"] for r in rounds), rounds
    assert len({tuple(r) for r in rounds}) > 1, rounds


class Slow(Counting):
    async def start(self, rng: random.Random) -> Event:
        await trio.sleep(1.0)
        self.log.append("started")
        return Event("start", None)


def test_finish_lets_a_step_in_progress_complete_and_starts_no_other() -> None:
    started: list[str] = []
    recorded: list[tuple[Any, ...]] = []

    async def main() -> bool:
        sched = Schedule([Slow("membership", started)], 0.1, random.Random(1), lambda *a: recorded.append(a))  # type: ignore[list-item]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sched.run)
            await trio.sleep(0.5)  # the start step is running
            assert sched.running == "start-membership"
            ok = await sched.finish(timeout=5)
            assert sched.running is None
            nursery.cancel_scope.cancel()
        return ok

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) is True
    assert started == ["started"]
    assert [r[0] for r in recorded] == ["invoke", "info"], recorded
