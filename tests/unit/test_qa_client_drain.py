"""At the time limit a client stops invoking and lets its open operation complete."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from harness.client import Completion
from harness.generator import Rate, Recorder, Worker
from harness.workloads import Invocation


class _Writer:
    def __init__(self) -> None:
        self.ops: list[Any] = []

    def write(self, op: Any) -> None:
        self.ops.append(op)


class _SlowConn:
    """A connection whose every operation takes 0.3 s and succeeds."""

    @asynccontextmanager
    async def session(self):  # type: ignore[no-untyped-def]
        yield self

    async def run(self, fn: Any, *, writes: bool) -> Completion:
        await trio.sleep(0.3)
        return Completion("ok", value=1)


class _Workload:
    def is_write(self, op: Invocation) -> bool:
        return True

    async def apply(self, client: Any, op: Invocation, cl: str | None) -> Completion:
        raise AssertionError("the fake connection never calls apply")


def test_stop_completes_the_open_operation_and_invokes_no_more() -> None:
    """Set mid-operation, ``stop`` ends the worker after that op's completion: no dangling invoke."""
    writer = _Writer()

    async def main() -> None:
        recorder = Recorder(writer)  # type: ignore[arg-type]
        stop, done = trio.Event(), trio.Event()
        worker = Worker(0, 1, "n1", _SlowConn(), random.Random(1))  # type: ignore[arg-type]

        async def client() -> None:
            await worker.run(_Workload(), recorder, Rate(None, 1),  # type: ignore[arg-type]
                             lambda: Invocation("write", 0, 1), lambda op: "QUORUM", stop)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await trio.sleep(1.0)  # 0.3 s per op: the fourth op is open now
            stop.set()
            with trio.fail_after(0.5):
                await done.wait()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    types = [op.type for op in writer.ops]
    assert types == ["invoke", "ok"] * 4, types
