"""Internode messaging over real loopback sockets, all inside one trio run."""

from __future__ import annotations

import struct
from functools import partial
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio

from node import protocol
from node.cluster.messaging import Messaging, PeerUnreachable, RemoteError, RequestTimeout
from node.runtime import Runtime


def make(node_id: str, **kwargs: Any) -> Messaging:
    kwargs.setdefault("secret", "messaging-test-secret")  # authenticated, as every real cluster
    return Messaging(Runtime.real(seed=1), node_id, "127.0.0.1", kwargs.pop("port", 0), **kwargs)


async def echo(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"from": sender, "echo": payload}


@asynccontextmanager
async def running(*nodes: Messaging) -> AsyncIterator[trio.Nursery]:
    """Run each Messaging and tell every node the others' addresses."""
    async with trio.open_nursery() as nursery:
        ports = {}
        for m in nodes:
            ports[m.node_id] = await nursery.start(m.run)
        for m in nodes:
            for other, port in ports.items():
                if other != m.node_id:
                    m.set_address(other, "127.0.0.1", port)
        yield nursery
        nursery.cancel_scope.cancel()


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def cancellable(m: Messaging, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``m`` under its own cancel scope; reports (scope, port)."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as n:
            port = await n.start(m.run)
            task_status.started((scope, port))


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def test_request_response_and_one_way() -> None:
    a, b = make("a"), make("b")
    got: list[tuple[str, dict[str, Any]]] = []

    async def note(sender: str, payload: dict[str, Any]) -> None:
        got.append((sender, payload))

    b.register("ECHO", echo)
    b.register("NOTE", note)
    async with running(a, b):
        reply = await a.request("b", "ECHO", {"x": 1, "blob": b"\x00" * 1000}, timeout=2)
        assert reply == {"from": "a", "echo": {"x": 1, "blob": b"\x00" * 1000}}
        assert a.send("b", "NOTE", {"n": 1})
        await wait_for(lambda: got == [("a", {"n": 1})])


async def test_concurrent_requests_are_matched_by_id() -> None:
    a, b = make("a"), make("b")

    async def slow_echo(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        # Finish out of order so replies only match if request ids are honoured.
        await trio.sleep((payload["i"] % 7) * 0.001)
        return payload

    b.register("ECHO", slow_echo)
    failures: list[Any] = []

    async def requester(k: int) -> None:
        for i in range(100):
            value = k * 1000 + i
            reply = await a.request("b", "ECHO", {"i": value}, timeout=5)
            if reply != {"i": value}:
                failures.append((value, reply))

    async with running(a, b):
        async with trio.open_nursery() as n:
            for k in range(8):
                n.start_soon(requester, k)
    assert failures == []
    # Coalescing: far fewer socket writes than frames under concurrency.
    assert a.stats.frames_written == 800
    assert a.stats.writes < 800


async def test_request_to_self_runs_the_local_handler() -> None:
    a = make("a")
    a.register("ECHO", echo)
    async with running(a):
        assert await a.request("a", "ECHO", {"k": "v"}, timeout=1) == {"from": "a", "echo": {"k": "v"}}


async def test_timeout_then_connection_still_usable() -> None:
    a, b = make("a"), make("b")

    async def sleepy(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep(payload["s"])
        return {"slept": payload["s"]}

    b.register("SLEEP", sleepy)
    async with running(a, b):
        start = trio.current_time()
        with pytest.raises(RequestTimeout):
            await a.request("b", "SLEEP", {"s": 1.0}, timeout=0.2)
        assert trio.current_time() - start < 0.9
        assert await a.request("b", "SLEEP", {"s": 0}, timeout=2) == {"slept": 0}
        await trio.sleep(1.0)  # the late reply arrives and is ignored
        assert await a.request("b", "SLEEP", {"s": 0}, timeout=2) == {"slept": 0}


async def test_unknown_verb_and_failing_handler_are_remote_errors() -> None:
    a, b = make("a"), make("b")

    async def broken(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bad thing")

    b.register("BROKEN", broken)
    b.register("ECHO", echo)
    async with running(a, b):
        with pytest.raises(RemoteError, match="unknown verb"):
            await a.request("b", "NOPE", {}, timeout=2)
        with pytest.raises(RemoteError, match="bad thing"):
            await a.request("b", "BROKEN", {}, timeout=2)
        assert (await a.request("b", "ECHO", {}, timeout=2))["from"] == "a"


async def test_unreachable_peer_fails_fast_and_counts_drops() -> None:
    a = make("a")
    async with running(a):
        with pytest.raises(PeerUnreachable, match="no known address"):
            await a.request("ghost", "ECHO", {}, timeout=2)
        # A port nobody listens on: bind one, note it, close it.
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
        sock.close()
        a.set_address("dead", "127.0.0.1", dead_port)
        with pytest.raises(PeerUnreachable):
            await a.request("dead", "ECHO", {}, timeout=2)
        # Now in backoff: fails at once, one-ways are dropped and counted.
        with trio.fail_after(0.01):
            with pytest.raises(PeerUnreachable):
                await a.request("dead", "ECHO", {}, timeout=2)
        before = a.stats.dropped_unreachable
        assert a.send("dead", "ECHO", {}) is False
        assert a.stats.dropped_unreachable == before + 1


async def test_peer_restart_and_reconnect() -> None:
    a, b = make("a"), make("b")
    b.register("ECHO", echo)
    async with trio.open_nursery() as outer:
        await outer.start(a.run)
        b_scope, b_port = await outer.start(cancellable, b)
        a.set_address("b", "127.0.0.1", b_port)
        assert (await a.request("b", "ECHO", {"n": 1}, timeout=2))["echo"] == {"n": 1}

        # Stop b: a pending request fails (connection lost) instead of hanging to its timeout.
        async def hang(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
            await trio.sleep_forever()
            raise AssertionError

        b.register("HANG", hang)
        result: list[Any] = []

        async def pending() -> None:
            try:
                await a.request("b", "HANG", {}, timeout=10)
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                result.append(exc)

        outer.start_soon(pending)
        await trio.sleep(0.1)
        b_scope.cancel()
        await wait_for(lambda: result, timeout=3)
        assert isinstance(result[0], PeerUnreachable)

        with pytest.raises(PeerUnreachable):
            await a.request("b", "ECHO", {}, timeout=2)

        # Restart b on the same port; a reconnects after its backoff.
        b2 = make("b", port=b_port)
        b2.register("ECHO", echo)
        await outer.start(b2.run)
        with trio.fail_after(5):
            while True:
                try:
                    reply = await a.request("b", "ECHO", {"n": 2}, timeout=2)
                    break
                except PeerUnreachable:
                    await trio.sleep(0.05)
        assert reply == {"from": "a", "echo": {"n": 2}}
        outer.cancel_scope.cancel()


async def test_route_overrides_the_address() -> None:
    a, b = make("a"), make("b")
    b.register("ECHO", echo)
    forwarded = []

    async def proxy(client: trio.SocketStream) -> None:
        # A byte-forwarding proxy, as the harness puts on every link.
        forwarded.append(1)
        async with client, await trio.open_tcp_stream("127.0.0.1", b.port) as upstream:

            async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                try:
                    while data := await src.receive_some(65536):
                        await dst.send_all(data)
                except trio.BrokenResourceError:
                    pass
                finally:
                    with trio.CancelScope(shield=True):
                        await dst.aclose()

            async with trio.open_nursery() as n:
                n.start_soon(pump, client, upstream)
                n.start_soon(pump, upstream, client)

    async with running(a, b) as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy, 0, host="127.0.0.1"))
        proxy_port = listeners[0].socket.getsockname()[1]
        a.set_route("b", "127.0.0.1", proxy_port)
        assert a.address_of("b") == ("127.0.0.1", proxy_port)
        assert (await a.request("b", "ECHO", {"via": "proxy"}, timeout=2))["echo"] == {"via": "proxy"}
        assert forwarded == [1]
        # A route given at construction time wins over set_address too.
        c = Messaging(Runtime.real(), "c", "127.0.0.1", 0, routes={"b": ("127.0.0.1", proxy_port)})
        c.set_address("b", "127.0.0.1", b.port)
        assert c.address_of("b") == ("127.0.0.1", proxy_port)


# Each bad connection must be closed by the node promptly, not left to time out.
HANDSHAKE_GRACE = 2.0


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\xff\xff\xff\xff" + b"\x00" * 64,  # a 4 GiB length prefix
        struct.pack(">I", 3) + b"\xc1\xc1\xc1",  # a frame of invalid msgpack
        protocol.encode_frame({"op": "not a hello"}),
        protocol.encode_frame({"h": "x"}) + struct.pack(">I", 4) + msgpack.packb([1, 2, 3]),  # not a map
        protocol.encode_frame({"h": "x"}) + protocol.encode_frame({"v": 7, "i": "nope"}),  # wrong types
    ],
)
async def test_garbage_closes_only_that_connection(junk: bytes) -> None:
    a, b = make("a"), make("b")
    b.register("ECHO", echo)
    async with running(a, b):
        assert (await a.request("b", "ECHO", {"n": 0}, timeout=2))["echo"] == {"n": 0}
        for _ in range(20):
            raw = await trio.open_tcp_stream("127.0.0.1", b.port)
            await raw.send_all(junk)
            with trio.fail_after(HANDSHAKE_GRACE):
                while await raw.receive_some(65536):
                    pass  # b may answer a hello first; then it must close
            await raw.aclose()
        assert (await a.request("b", "ECHO", {"n": 1}, timeout=2))["echo"] == {"n": 1}


async def test_truncated_frames_then_hangup_keep_node_serving() -> None:
    # A truncated frame is indistinguishable from a slow sender until the peer hangs up; the
    # node must just drop the partial frame with the connection.
    a, b = make("a"), make("b")
    b.register("ECHO", echo)
    async with running(a, b):
        for _ in range(50):
            raw = await trio.open_tcp_stream("127.0.0.1", b.port)
            await raw.send_all(struct.pack(">I", 1000) + b"\x81")
            await raw.aclose()
        assert (await a.request("b", "ECHO", {"n": 1}, timeout=2))["echo"] == {"n": 1}


async def test_wrong_secret_is_refused() -> None:
    a, b = make("a", secret="right"), make("b", secret="wrong")
    b.register("ECHO", echo)
    async with running(a, b):
        with pytest.raises(PeerUnreachable):
            await a.request("b", "ECHO", {}, timeout=2)
        # Mutual authentication: the connector finds the acceptor's proof wrong first.
        assert a.stats.rejected_connections + b.stats.rejected_connections >= 1
    a2, b2 = make("a", secret="same"), make("b", secret="same")
    b2.register("ECHO", echo)
    async with running(a2, b2):
        assert (await a2.request("b", "ECHO", {}, timeout=2))["from"] == "a"


async def test_queue_bound_drops_are_counted() -> None:
    a, b = make("a", max_queue=3), make("b")
    got = []

    async def note(sender: str, payload: dict[str, Any]) -> None:
        got.append(payload["n"])

    b.register("NOTE", note)
    async with running(a, b):
        # Without yielding, nothing can be written yet: the queue holds exactly max_queue frames.
        results = [a.send("b", "NOTE", {"n": i}) for i in range(10)]
        assert results == [True] * 3 + [False] * 7
        assert a.stats.dropped_queue_full == 7
        await wait_for(lambda: sorted(got) == [0, 1, 2])


async def test_cancellation_leaves_no_task() -> None:
    before = count_tasks()
    a, b = make("a"), make("b")

    async def hang(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError

    b.register("HANG", hang)
    b.register("ECHO", echo)
    a.register("ECHO", echo)
    outcome: list[Any] = []
    with trio.CancelScope() as scope:
        async with running(a, b) as nursery:
            await a.request("b", "ECHO", {}, timeout=2)
            await b.request("a", "ECHO", {}, timeout=2)

            async def stuck() -> None:
                try:
                    await a.request("b", "HANG", {}, timeout=30)
                except PeerUnreachable as exc:
                    outcome.append(exc)

            nursery.start_soon(stuck)
            await trio.sleep(0.1)
            assert count_tasks() > before + 6
            scope.cancel()
            await trio.sleep_forever()
    assert count_tasks() == before
    assert a.port is None and b.port is None


async def test_peer_address_is_learnt_from_its_hello() -> None:
    a, b = make("a"), make("b")
    a.register("ECHO", echo)
    b.register("ECHO", echo)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        b_port = await nursery.start(b.run)
        a.set_address("b", "127.0.0.1", b_port)
        assert b.address_of("a") is None
        await a.request("b", "ECHO", {}, timeout=2)
        assert b.address_of("a") == ("127.0.0.1", a.port)
        assert (await b.request("a", "ECHO", {}, timeout=2))["from"] == "b"
        assert a.remote_id("b") == "b" and a.is_connected("b")
        nursery.cancel_scope.cancel()


async def test_handlers_per_connection_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import node.cluster.messaging as messaging_module

    monkeypatch.setattr(messaging_module, "MAX_INFLIGHT_HANDLERS", 3)
    a, b = make("a"), make("b")
    running_now = 0
    peak = 0

    async def slow(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await trio.sleep(0.01)
        running_now -= 1
        return payload

    b.register("SLOW", slow)
    async with running(a, b):
        async with trio.open_nursery() as n:
            for i in range(30):
                n.start_soon(a.request, "b", "SLOW", {"i": i}, 5)
    assert peak == 3
