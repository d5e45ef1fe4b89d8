"""How the harness's node connection maps transport failures to Jepsen outcomes: nothing sent is a
fail (for writes too); a connection lost after a write was sent is info (it may have happened)."""

from __future__ import annotations

import socket
from functools import partial

import trio

from harness.client import CONNECTION_REFUSED, Completion, NodeConnection


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _put(client: object) -> Completion:
    ts = await client.put("ks", "t", "k", {"v": 1}, consistency="QUORUM")  # type: ignore[attr-defined]
    return Completion("ok", 1, timestamp=ts)


async def test_a_refused_connection_fails_writes_and_reads_without_sending() -> None:
    conn = NodeConnection("127.0.0.1", _closed_port(), secret="s", timeout=2)
    async with conn.session():
        for writes in (True, False):
            done = await conn.run(_put, writes=writes)
            assert (done.type, done.error) == ("fail", CONNECTION_REFUSED), done
            assert "cannot connect" in done.extra["message"]


async def test_a_connection_lost_after_a_write_was_sent_is_info_and_a_read_fails() -> None:
    received = []

    async def hang_up(stream: trio.SocketStream) -> None:
        received.append(await stream.receive_some(65536))  # the request arrived, then the node dies
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        conn = NodeConnection("127.0.0.1", port, secret="s", timeout=2)
        async with conn.session():
            write = await conn.run(_put, writes=True)
            read = await conn.run(_put, writes=False)
        nursery.cancel_scope.cancel()
    assert received and all(received)
    assert write.type == "info" and write.error != CONNECTION_REFUSED, write
    assert read.type == "fail" and read.error != CONNECTION_REFUSED, read
