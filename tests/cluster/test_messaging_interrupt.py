"""A convicted peer's outgoing connection is closed, and the next message connects afresh."""

from __future__ import annotations

import trio

from tests.cluster.test_messaging import echo, make, running, wait_for


async def test_interrupt_closes_the_connection_and_the_next_request_reconnects() -> None:
    a, b = make("a"), make("b")
    b.register("ECHO", echo)
    async with running(a, b):
        assert await a.request("b", "ECHO", {"n": 1}, timeout=2) == {"from": "a", "echo": {"n": 1}}
        assert a.stats.connects == 1 and a.is_connected("b")
        a.interrupt("b")
        await wait_for(lambda: not a.is_connected("b"))
        assert a.stats.interrupted == 1
        # Not a failure: no backoff, the next request connects at once.
        with trio.fail_after(2):
            assert await a.request("b", "ECHO", {"n": 2}, timeout=2) == {"from": "a", "echo": {"n": 2}}
        assert a.stats.connects == 2 and a.stats.connect_failures == 0
        a.interrupt("nobody")  # a peer never contacted: nothing to close
        assert a.stats.interrupted == 1
