"""Internode authentication on loopback: a captured handshake replayed from outside is refused and
applies nothing, a hello without the challenge is refused, no secret means no peers unless the
insecure dev mode is named, and sealed frames cannot be altered, replayed or reordered."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from node import protocol
from node.cluster import auth
from node.cluster.messaging import Messaging, PeerUnreachable
from node.runtime import Runtime
from tests.cluster.test_messaging import running

SECRET = "auth-test-secret"


def make(node_id: str, **kwargs: Any) -> Messaging:
    return Messaging(Runtime.real(seed=3), node_id, "127.0.0.1", 0, **kwargs)


class Applied:
    """A MUTATION-like handler that counts what it applied."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    async def __call__(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.payloads.append(payload)
        return {}


async def _tap(nursery: trio.Nursery, upstream_port: int, recorded: list[bytes]) -> int:
    """A TCP relay in front of ``upstream_port`` recording the bytes sent towards it."""

    async def handle(client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream("127.0.0.1", upstream_port) as up:
            async def pump(src: trio.SocketStream, dst: trio.SocketStream, record: bool) -> None:
                try:
                    while data := await src.receive_some(65536):
                        if record:
                            recorded.append(data)
                        await dst.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                finally:
                    with trio.CancelScope(shield=True):
                        await dst.aclose()

            async with trio.open_nursery() as n:
                n.start_soon(pump, client, up, True)
                n.start_soon(pump, up, client, False)

    listeners = await nursery.start(trio.serve_tcp, handle, 0)
    return listeners[0].socket.getsockname()[1]


async def test_a_replayed_handshake_and_mutation_are_refused() -> None:
    a, b = make("a", secret=SECRET), make("b", secret=SECRET)
    applied = Applied()
    b.register("MUTATION", applied)
    recorded: list[bytes] = []
    async with running(a, b) as nursery:
        assert b.port is not None
        tap = await _tap(nursery, b.port, recorded)
        a.set_route("b", "127.0.0.1", tap)
        await a.request("b", "MUTATION", {"k": "v1"}, timeout=5)
        assert applied.payloads == [{"k": "v1"}]
        capture = b"".join(recorded)
        # Replay everything a sent (hello, proof, sealed MUTATION) on fresh connections.
        for _ in range(3):
            raw = await trio.open_tcp_stream("127.0.0.1", b.port)
            await raw.send_all(capture)
            with trio.fail_after(5):
                while await raw.receive_some(65536):
                    pass  # b answers its hello with a new nonce, then closes
            await raw.aclose()
        print(f"replayed captures applied: {len(applied.payloads) - 1}; rejected handshakes: "
              f"{b.stats.rejected_connections}")
        assert applied.payloads == [{"k": "v1"}]
        assert b.stats.rejected_connections == 3


async def test_a_hello_without_the_challenge_is_refused() -> None:
    b = make("b", secret=SECRET)
    applied = Applied()
    b.register("MUTATION", applied)
    async with running(b):
        assert b.port is not None
        raw = await trio.open_tcp_stream("127.0.0.1", b.port)
        await raw.send_all(protocol.encode_frame({"h": "evil", "a": ["127.0.0.1", 1], "m": ""})
                           + protocol.encode_frame({"i": 1, "v": "MUTATION", "p": {"k": "forged"}}))
        with trio.fail_after(5):
            got = b""
            while chunk := await raw.receive_some(65536):
                got += chunk
        await raw.aclose()
    assert applied.payloads == [] and got == b""


async def test_no_secret_refuses_peers_unless_insecure_dev_mode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    a, b = make("a"), make("b")
    b.register("MUTATION", Applied())
    async with running(a, b):
        with pytest.raises(PeerUnreachable, match="internode_insecure"):
            await a.request("b", "MUTATION", {}, timeout=2)
    assert sum("internode_insecure" in r.getMessage() for r in caplog.records) == 1  # said once
    a2, b2 = make("a", insecure=True), make("b", insecure=True)
    b2.register("MUTATION", Applied())
    async with running(a2, b2):
        assert await a2.request("b", "MUTATION", {}, timeout=2) == {}


def test_sealed_frames_cannot_be_altered_replayed_or_reordered() -> None:
    key = b"k" * 32
    frames = [protocol.encode_frame({"i": n, "v": "MUTATION", "p": {"k": n}}) for n in range(3)]
    sealed = [auth.Sealer(key).seal_all(frames[:1])]  # frame 0 alone
    s = auth.Sealer(key)
    wire = [s.seal(f) for f in frames]
    ok = auth.OpeningDecoder(key, b"".join(wire))
    assert [m["p"]["k"] for m in ok.messages()] == [0, 1, 2]
    altered = bytearray(b"".join(wire))
    altered[len(wire[0]) + 10] ^= 1
    dec = auth.OpeningDecoder(key)
    dec.feed(bytes(altered))
    assert dec.next_message()["p"]["k"] == 0
    with pytest.raises(protocol.ProtocolError, match="fails its MAC"):
        dec.next_message()
    for bad in (wire[0] + wire[0], wire[1] + wire[0], sealed[0] + wire[2]):  # replay, reorder, skip
        dec = auth.OpeningDecoder(key, bad)
        with pytest.raises(protocol.ProtocolError, match="fails its MAC"):
            dec.messages()
    with pytest.raises(protocol.ProtocolError, match="fails its MAC"):
        auth.OpeningDecoder(b"x" * 32, wire[0]).messages()  # another key
