"""Toxiproxy 2.12 fidelity on live connections and in the API's edges (issue 18): toxicity drawn
again for the toxic before one added or removed, /populate keeping a proxy whose listen address
resolves to the same one, error bodies typed text/plain; and what is kept on purpose: a
reset_peer added to a live connection resets it (Toxiproxy sends a plain close there, a bug).
Against ringlab's proxy server with real connections on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import random

import pytest
import trio

from nemesis.proxy import ProxyServer, serve_proxy_api
from nemesis.proxy_client import ProxyClient
from tests.unit.echo import echo_handler
from tests.unit.test_proxy_client import echoes

LINKS = 40  # live connections: a redraw that changed nothing would be a 2^-40 chance


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> str:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo_handler, 0, host="127.0.0.1"))
    return "127.0.0.1:%d" % listeners[0].socket.getsockname()[1]


async def open_links(server: ProxyServer, name: str, n: int, nursery: trio.Nursery) -> list[trio.SocketStream]:
    host, port = server.proxies[name].listen.rsplit(":", 1)
    streams = [await trio.open_tcp_stream(host, int(port)) for _ in range(n)]
    with trio.fail_after(5):
        while len(server.proxies[name].connections) < n:
            await trio.sleep(0.01)
    return streams


def affected(server: ProxyServer, name: str, toxic: str) -> frozenset[int]:
    """Which live connections (by creation order) the toxic applies to."""
    conns = sorted(server.proxies[name].connections, key=id)
    return frozenset(i for i, c in enumerate(conns)
                     if any(t.name == toxic for t in c.links["downstream"].active))


async def test_adding_or_removing_a_toxic_draws_the_one_before_it_again(upstream: str, nursery: trio.Nursery) -> None:
    server = ProxyServer(nursery, random.Random(5))
    assert (await server.handle("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": upstream}))[0] == 201
    streams = await open_links(server, "p", LINKS, nursery)
    half = {"name": "half", "type": "latency", "toxicity": 0.5, "attributes": {"latency": 1}}
    assert (await server.handle("POST", "/proxies/p/toxics", half))[0] == 200
    first = affected(server, "p", "half")
    assert 0 < len(first) < LINKS
    always = {"name": "always", "type": "noop", "attributes": {}}
    assert (await server.handle("POST", "/proxies/p/toxics", always))[0] == 200
    second = affected(server, "p", "half")
    assert second != first and 0 < len(second) < LINKS  # drawn again, as Toxiproxy restarts that stub
    assert affected(server, "p", "always") == frozenset(range(LINKS))  # toxicity 1: always on
    assert (await server.handle("DELETE", "/proxies/p/toxics/always", None))[0] == 204
    assert affected(server, "p", "half") != second  # the removal redraws the toxic before it too
    # A toxic added in the other direction redraws nothing in this one.
    before = affected(server, "p", "half")
    up = {"name": "up", "type": "noop", "stream": "upstream", "attributes": {}}
    assert (await server.handle("POST", "/proxies/p/toxics", up))[0] == 200
    assert affected(server, "p", "half") == before
    for s in streams:
        await s.aclose()


async def test_populate_keeps_a_proxy_whose_listen_resolves_to_its_address(upstream: str, nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_proxy_api, "127.0.0.1", 0)
    client = ProxyClient(f"http://127.0.0.1:{port}")
    listen = (await client.create_proxies({"p": ("127.0.0.1:0", upstream)}))["p"]
    stream = await trio.open_tcp_stream("127.0.0.1", int(listen.rsplit(":", 1)[1]))
    same = "localhost:" + listen.rsplit(":", 1)[1]
    assert (await client.create_proxies({"p": (same, upstream)}))["p"] == listen
    # Kept, not restarted: the connection opened before still carries traffic.
    await stream.send_all(b"still here")
    with trio.fail_after(3):
        assert await stream.receive_some(100) == b"still here"
    await stream.aclose()
    moved = (await client.create_proxies({"p": ("localhost:0", upstream)}))["p"]
    assert moved != listen and await echoes(moved)  # another port: replaced


async def test_errors_are_json_sent_as_text_plain(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_proxy_api, "127.0.0.1", 0)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    for path in (b"/proxies/nope", b"/version"):
        await stream.send_all(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        with trio.fail_after(3):
            while b"\r\n\r\n" not in raw or not raw.endswith(b"\n") or raw.endswith(b"\r\n\r\n"):
                raw += await stream.receive_some(4096)
        head, body = raw.split(b"\r\n\r\n", 1)
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        if path == b"/proxies/nope":
            assert head.startswith(b"HTTP/1.1 404")
            assert headers[b"content-type"] == b"text/plain; charset=utf-8"
            assert headers[b"x-content-type-options"] == b"nosniff"
            assert json.loads(body) == {"error": "proxy not found", "status": 404}
        else:
            assert headers[b"content-type"] == b"application/json"
    await stream.aclose()


async def test_a_reset_peer_added_to_a_live_connection_resets_it(upstream: str, nursery: trio.Nursery) -> None:
    # Toxiproxy 2.12 sets SO_LINGER 0 only on connections that start with reset_peer in their
    # chain, so one added later ends with a plain close; kept as a reset (docs/fault-proxy.md).
    port = await nursery.start(serve_proxy_api, "127.0.0.1", 0)
    client = ProxyClient(f"http://127.0.0.1:{port}")
    listen = (await client.create_proxies({"p": ("127.0.0.1:0", upstream)}))["p"]
    stream = await trio.open_tcp_stream("127.0.0.1", int(listen.rsplit(":", 1)[1]))
    await stream.send_all(b"hello")
    with trio.fail_after(3):
        assert await stream.receive_some(100) == b"hello"
    await client._call("add reset_peer", "p", "post", "/proxies/p/toxics",
                       {"name": "rst", "type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}})
    await stream.send_all(b"boom")
    with pytest.raises(trio.BrokenResourceError) as info:
        with trio.fail_after(3):
            while await stream.receive_some(100):
                pass
    assert isinstance(info.value.__cause__, ConnectionResetError)
