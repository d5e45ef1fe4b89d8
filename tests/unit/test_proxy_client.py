"""The harness's wrapper around toxiproxy-python: faults through it, and no hang or crash."""

from __future__ import annotations

import functools

import pytest
import trio

from tests.unit.echo import echo_handler
from nemesis.proxy import VERSION, serve_proxy_api
from nemesis.proxy_client import ProxyClient, ProxyError, link_name


@pytest.fixture
async def client(nursery: trio.Nursery) -> ProxyClient:
    port = await nursery.start(serve_proxy_api, "127.0.0.1", 0)
    return ProxyClient(f"http://127.0.0.1:{port}", timeout_s=2.0)


@pytest.fixture
async def echo_addr(nursery: trio.Nursery) -> str:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo_handler, 0,
                                                      host="127.0.0.1"))
    return "127.0.0.1:%d" % listeners[0].socket.getsockname()[1]


async def connect(listen: str) -> trio.SocketStream:
    host, port = listen.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def echoes(listen: str, timeout: float = 1.0) -> bool:
    """True if a fresh connection through ``listen`` echoes within ``timeout``."""
    stream = await connect(listen)
    try:
        await stream.send_all(b"ping")
        with trio.move_on_after(timeout):
            return await stream.receive_some(10) == b"ping"
        return False
    finally:
        await stream.aclose()


async def test_create_partition_heal_latency(client: ProxyClient, echo_addr: str) -> None:
    assert await client.version() == VERSION
    a_b, b_a = link_name("a", "b"), link_name("b", "a")
    listens = await client.create_proxies({a_b: ("127.0.0.1:0", echo_addr),
                                           b_a: ("127.0.0.1:0", echo_addr)})
    assert set(listens) == {a_b, b_a}
    assert await echoes(listens[a_b])

    await client.partition([a_b])
    await client.partition([a_b])  # idempotent: already cut is fine
    assert not await echoes(listens[a_b], timeout=0.3)
    assert await echoes(listens[b_a])  # the other direction's proxy is untouched
    names = {t["name"] for t in (await client.proxies())[a_b]["toxics"]}
    assert names == {"ringlab_partition_upstream", "ringlab_partition_downstream"}

    await client.heal()
    await client.heal()  # idempotent too
    assert await echoes(listens[a_b])

    await client.add_latency([b_a], latency_ms=100, jitter_ms=10)
    await client.add_latency([b_a], latency_ms=120)  # updates in place
    toxics = (await client.proxies())[b_a]["toxics"]
    assert {t["attributes"]["latency"] for t in toxics} == {120}
    start = trio.current_time()
    assert await echoes(listens[b_a])
    assert trio.current_time() - start >= 0.2  # both streams delayed
    await client.remove_latency()
    assert (await client.proxies())[b_a]["toxics"] == []


async def test_cut_one_stream(client: ProxyClient, echo_addr: str) -> None:
    listens = await client.create_proxies({"s": ("127.0.0.1:0", echo_addr)})
    await client.cut_streams([("s", "downstream")])
    assert not await echoes(listens["s"], timeout=0.3)  # requests arrive, replies do not
    toxics = (await client.proxies())["s"]["toxics"]
    assert [t["stream"] for t in toxics] == ["downstream"]
    await client.heal(["s"])
    assert await echoes(listens["s"])
    with pytest.raises(ValueError, match="sideways"):
        await client.cut_streams([("s", "sideways")])


async def test_heal_all_leaves_foreign_toxics(client: ProxyClient, echo_addr: str) -> None:
    await client.create_proxies({"x": ("127.0.0.1:0", echo_addr)})
    await client._call("add", "x", "post", "/proxies/x/toxics",
                       {"name": "theirs", "type": "latency", "attributes": {"latency": 1}})
    await client.partition(["x"])
    await client.set_enabled("x", False)
    await client.heal_all()
    proxy = (await client.proxies())["x"]
    assert proxy["enabled"] is True
    assert [t["name"] for t in proxy["toxics"]] == ["theirs"]
    await client.reset()
    assert (await client.proxies())["x"]["toxics"] == []
    await client.delete_proxies(["x", "x"])
    assert await client.proxies() == {}


async def test_errors_name_operation_and_proxy(client: ProxyClient) -> None:
    with pytest.raises(ProxyError) as info:
        await client.partition(["ghost"])
    assert info.value.operation == "add partition" and info.value.proxy == "ghost"
    assert info.value.status == 404 and "proxy not found" in str(info.value)
    with pytest.raises(ProxyError, match="missing required field"):
        await client.create_proxies({"bad": ("127.0.0.1:0", "")})
    with pytest.raises(ProxyError, match="disable on proxy 'ghost'"):
        await client.set_enabled("ghost", False)


async def test_unreachable_server_is_an_error_not_a_crash() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ProxyClient(f"127.0.0.1:{port}", timeout_s=1.0)
    with pytest.raises(ProxyError, match="cannot reach"):
        await client.version()


async def test_silent_server_times_out(nursery: trio.Nursery) -> None:
    async def swallow(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()  # accepts, reads nothing, never answers

    listeners = await nursery.start(functools.partial(trio.serve_tcp, swallow, 0,
                                                      host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    client = ProxyClient(f"http://127.0.0.1:{port}", timeout_s=0.3)
    start = trio.current_time()
    with pytest.raises(ProxyError, match="no answer .* within 0.3 s"):
        await client.heal(["n1_to_n2"])
    assert trio.current_time() - start < 5


def test_bad_url_is_rejected() -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        ProxyClient("ftp://somewhere")
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        ProxyClient("http://127.0.0.1")
