"""node/client.py's waits without an Event per request (issue 17): a response, the request timeout,
the connection's end and a cancelled caller each end a wait exactly once, on a virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from node.client import Client, ClientTimeout, ConnectionLost
from node.protocol import FrameDecoder, Unavailable, encode_frame, error_response


class _Server:
    """A client's stream whose far end answers the requests the test lets through."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.requests: list[dict[str, Any]] = []
        self.inbox = bytearray()
        self.arrived = trio.Event()
        self.closed = False

    async def send_all(self, data: bytes) -> None:
        self.decoder.feed(data)
        self.requests.extend(self.decoder.messages())
        await trio.lowlevel.checkpoint()

    def answer(self, msg: dict[str, Any]) -> None:
        self.inbox += encode_frame(msg)
        self.arrived.set()

    def hang_up(self) -> None:
        self.closed = True
        self.arrived.set()

    async def receive_some(self, n: int) -> bytes:
        while not self.inbox and not self.closed:
            self.arrived = trio.Event()
            await self.arrived.wait()
        data = bytes(self.inbox)
        self.inbox.clear()
        return data

    async def aclose(self) -> None:
        pass


async def _run(client: Client, nursery: trio.Nursery) -> None:
    nursery.start_soon(client._reader)
    nursery.start_soon(client._writer)
    nursery.start_soon(client._deadlines.run)
    await trio.testing.wait_all_tasks_blocked()


async def test_responses_errors_timeouts_and_cancellation_each_end_one_wait(autojump_clock: Any) -> None:
    server = _Server()
    client = Client(server, timeout=5.0)  # type: ignore[arg-type]
    got: dict[str, Any] = {}

    scopes: dict[str, trio.CancelScope] = {}

    async def call(name: str, key: str) -> None:
        with trio.CancelScope() as scopes[name]:
            try:
                got[name] = await client.put("ks", "t", key, {"v": 1}, consistency="QUORUM")
            except Exception as exc:
                got[name] = exc

    async with trio.open_nursery() as nursery:
        await _run(client, nursery)
        for name in ("ok", "refused", "late", "never"):
            nursery.start_soon(call, name, name)
        await trio.testing.wait_all_tasks_blocked()
        by_key = {r["key"]: r for r in server.requests}
        assert by_key["ok"]["consistency"] == "QUORUM" and "ttl" not in by_key["ok"]
        server.answer({"id": by_key["ok"]["id"], "ok": True, "timestamp": 7, "replicas": ["a"], "acked": ["a"], "hinted": []})
        server.answer(error_response(by_key["refused"]["id"], Unavailable("down", consistency="QUORUM")))
        await trio.testing.wait_all_tasks_blocked()
        assert got["ok"] == 7 and client.pop_acks(7) == {"replicas": ["a"], "acked": ["a"], "hinted": []}
        assert isinstance(got["refused"], Unavailable)
        scopes["never"].cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert set(client._waiting) == {by_key["late"]["id"]}  # the cancelled caller gave its slot up
        await trio.sleep(6.0)  # past the timeout: "late" times out once, "never" is gone already
        assert isinstance(got["late"], ClientTimeout) and "never" not in got
        assert client._waiting == {}
        server.answer({"id": by_key["late"]["id"], "ok": True, "timestamp": 8})  # too late: dropped
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def test_a_lost_connection_fails_every_waiting_request_and_later_ones(autojump_clock: Any) -> None:
    server = _Server()
    client = Client(server, timeout=None)  # type: ignore[arg-type]
    errors: list[Exception] = []

    async def call(key: str) -> None:
        with pytest.raises(ConnectionLost) as exc:
            await client.put("ks", "t", key, {"v": 1})
        errors.append(exc.value)

    async with trio.open_nursery() as nursery:
        await _run(client, nursery)
        for key in ("a", "b"):
            nursery.start_soon(call, key)
        await trio.testing.wait_all_tasks_blocked()
        server.hang_up()
        await trio.testing.wait_all_tasks_blocked()
        assert len(errors) == 2 and client._waiting == {}
        await call("c")  # after the end: refused at once, no wait
        assert len(errors) == 3
        nursery.cancel_scope.cancel()
