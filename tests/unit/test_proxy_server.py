"""The fault proxy, driven with toxiproxy-python exactly as one drives a real Toxiproxy server,
and real traffic through it on 127.0.0.1 against a small echo server."""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import requests
import toxiproxy
import trio
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from tests.unit.echo import echo_handler
from nemesis.proxy import VERSION, serve_proxy_api


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking toxiproxy-python call without blocking the proxy in this same loop."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@pytest.fixture
async def api_port(nursery: trio.Nursery) -> int:
    port = await nursery.start(serve_proxy_api, "127.0.0.1", 0)
    # toxiproxy-python keeps the server address in class attributes; point it at ours.
    toxiproxy.Toxiproxy().update_api_consumer("127.0.0.1", port)
    return port


@pytest.fixture
async def echo_addr(nursery: trio.Nursery) -> str:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo_handler, 0,
                                                      host="127.0.0.1"))
    return "127.0.0.1:%d" % listeners[0].socket.getsockname()[1]


@pytest.fixture
async def proxy(api_port: int, echo_addr: str) -> toxiproxy.Proxy:
    server = toxiproxy.Toxiproxy()
    return await in_thread(server.create, upstream=echo_addr, name="echo")


async def connect(listen: str) -> trio.SocketStream:
    host, port = listen.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def roundtrip(stream: trio.SocketStream, data: bytes, timeout: float = 2.0) -> bytes:
    await stream.send_all(data)
    got = b""
    with trio.move_on_after(timeout):
        while len(got) < len(data):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            got += chunk
    return got


async def read_to_eof(stream: trio.SocketStream, timeout: float = 3.0) -> bytes:
    got = b""
    with trio.fail_after(timeout):
        while chunk := await stream.receive_some(65536):
            got += chunk
    return got


async def raw(method: str, path: str, port: int, **kwargs: Any) -> requests.Response:
    """A plain HTTP request, for what the library has no method for (off the event loop)."""
    return await in_thread(requests.request, method, f"http://127.0.0.1:{port}{path}",
                           timeout=5, **kwargs)


# -- API, through toxiproxy-python ------------------------------------------------------------


async def test_version_create_list_get(proxy: toxiproxy.Proxy, echo_addr: str) -> None:
    server = toxiproxy.Toxiproxy()
    assert json.loads(await in_thread(server.version)) == {"version": VERSION}
    assert proxy.enabled is True
    assert proxy.upstream == echo_addr
    assert proxy.listen.startswith("127.0.0.1:") and not proxy.listen.endswith(":0")
    listed = await in_thread(server.proxies)
    assert set(listed) == {"echo"} and listed["echo"].listen == proxy.listen
    assert (await in_thread(server.get_proxy, "echo")).upstream == echo_addr
    assert await in_thread(server.get_proxy, "nope") is None
    stream = await connect(proxy.listen)
    assert await roundtrip(stream, b"hello") == b"hello"


async def test_duplicate_and_bad_creates(api_port: int, proxy: toxiproxy.Proxy) -> None:
    with pytest.raises(ProxyExists):  # client-side check of the library
        await in_thread(toxiproxy.Toxiproxy().create, upstream="127.0.0.1:1", name="echo")
    with pytest.raises(ProxyExists):  # and the server's own 409
        await in_thread(APIConsumer.post, "/proxies",
                        json={"name": "echo", "upstream": "127.0.0.1:1"})
    r = await raw("POST", "/proxies", api_port, json={"name": "x", "upstream": "127.0.0.1:1"})
    assert r.status_code == 201 and r.json()["enabled"] is True
    r = await raw("POST", "/proxies", api_port, json={"upstream": "127.0.0.1:1"})
    assert r.status_code == 400
    assert r.json() == {"error": "missing required field: name", "status": 400}
    r = await raw("POST", "/proxies", api_port, json={"name": "y"})
    assert r.json() == {"error": "missing required field: upstream", "status": 400}
    r = await raw("POST", "/proxies", api_port, data=b"{not json")
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body")
    r = await raw("POST", "/proxies", api_port, json={"name": "z", "upstream": "127.0.0.1:1",
                                                "listen": proxy.listen})
    assert r.status_code == 500 and "in use" in r.json()["error"]
    r = await raw("GET", "/proxies/nope", api_port)
    assert r.status_code == 404
    assert r.json() == {"error": "proxy not found", "status": 404}
    assert (await raw("DELETE", "/proxies/nope", api_port)).status_code == 404
    assert (await raw("GET", "/nowhere", api_port)).status_code == 404
    assert (await raw("PUT", "/proxies", api_port)).status_code == 405
    r = await raw("GET", "/version", api_port, headers={"User-Agent": "Mozilla/5.0"})
    assert r.status_code == 403


async def test_disable_enable_destroy(proxy: toxiproxy.Proxy) -> None:
    stream = await connect(proxy.listen)
    assert await roundtrip(stream, b"a") == b"a"
    await in_thread(proxy.disable)
    assert (await in_thread(toxiproxy.Toxiproxy().get_proxy, "echo")).enabled is False
    assert await read_to_eof(stream) == b""  # disabling closed the live connection
    with pytest.raises(OSError):
        await connect(proxy.listen)  # and the listener: refused
    await in_thread(proxy.enable)
    stream = await connect(proxy.listen)  # same port again
    assert await roundtrip(stream, b"b") == b"b"
    assert await in_thread(proxy.destroy) is True
    assert await read_to_eof(stream) == b""
    with pytest.raises(OSError):
        await connect(proxy.listen)
    assert await in_thread(toxiproxy.Toxiproxy().proxies) == {}


async def test_toxics_crud_and_errors(api_port: int, proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="latency", attributes={"latency": 5, "jitter": 1})
    await in_thread(proxy.add_toxic, type="timeout", stream="upstream", name="cut",
                    toxicity=0.5, attributes={"timeout": 0})
    toxics = await in_thread(proxy.toxics)
    assert set(toxics) == {"latency_downstream", "cut"}
    assert toxics["latency_downstream"].attributes == {"latency": 5, "jitter": 1}
    assert toxics["cut"].stream == "upstream" and toxics["cut"].toxicity == 0.5
    listed = (await raw("GET", "/proxies/echo/toxics", api_port)).json()
    assert [t["name"] for t in listed] == ["cut", "latency_downstream"]  # upstream chain first
    r = await raw("GET", "/proxies/echo/toxics/cut", api_port)
    assert r.json() == {"attributes": {"timeout": 0}, "name": "cut", "type": "timeout",
                        "stream": "upstream", "toxicity": 0.5}
    r = await raw("POST", "/proxies/echo/toxics/cut", api_port, json={"attributes": {"timeout": 7}})
    assert r.status_code == 200 and r.json()["attributes"] == {"timeout": 7}
    assert r.json()["toxicity"] == 0.5
    assert (await raw("GET", "/proxies/echo", api_port)).json()["toxics"][0]["attributes"] == {
        "timeout": 7}

    with pytest.raises(ProxyExists):
        await in_thread(proxy.add_toxic, type="latency", attributes={"latency": 1})
    with pytest.raises(InvalidToxic):
        await in_thread(proxy.add_toxic, type="nonsense")
    with pytest.raises(InvalidToxic):
        await in_thread(proxy.add_toxic, type="latency", stream="sideways")
    with pytest.raises(InvalidToxic):
        await in_thread(proxy.add_toxic, type="latency", name="l2",
                        attributes={"latency": "slow"})
    with pytest.raises(InvalidToxic):
        await in_thread(proxy.add_toxic, type="latency", name="l3", toxicity=2.0)
    with pytest.raises(NotFound):
        await in_thread(proxy.destroy_toxic, "nope")
    r = await raw("POST", "/proxies/nope/toxics", api_port, json={"type": "latency"})
    assert r.status_code == 404 and r.json()["error"] == "proxy not found"
    r = await raw("GET", "/proxies/echo/toxics/nope", api_port)
    assert r.json() == {"error": "toxic not found", "status": 404}
    r = await raw("POST", "/proxies/echo/toxics", api_port, json={"type": "bogus"})
    assert r.json() == {"error": "invalid toxic type", "status": 400}

    assert await in_thread(proxy.destroy_toxic, "cut") is True
    assert set(await in_thread(proxy.toxics)) == {"latency_downstream"}


async def test_populate_and_reset(api_port: int, echo_addr: str) -> None:
    body = [{"name": "p1", "listen": "127.0.0.1:0", "upstream": echo_addr},
            {"name": "p2", "listen": "127.0.0.1:0", "upstream": echo_addr, "enabled": False}]
    r = await raw("POST", "/populate", api_port, json=body)
    assert r.status_code == 201
    made = {p["name"]: p for p in r.json()["proxies"]}
    assert made["p1"]["enabled"] is True and made["p2"]["enabled"] is False
    # Same listen and upstream again: kept as is (same port), not replaced.
    again = [{"name": "p1", "listen": made["p1"]["listen"], "upstream": echo_addr}]
    r = await raw("POST", "/populate", api_port, json=again)
    assert r.status_code == 201 and r.json()["proxies"][0]["listen"] == made["p1"]["listen"]
    r = await raw("POST", "/populate", api_port, json=[{"name": "p3"}])
    assert r.status_code == 400 and "upstream at proxy 1" in r.json()["error"]
    r = await raw("POST", "/populate", api_port, json={"name": "p3"})
    assert r.status_code == 400
    r = await raw("POST", "/populate", api_port, data=b"[oops")
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body")
    assert "p3" not in (await raw("GET", "/proxies", api_port)).json()

    # The library's own populate helper works against us too.
    created = await in_thread(toxiproxy.Toxiproxy().populate,
                              [{"name": "p4", "listen": "127.0.0.1:0", "upstream": echo_addr}])
    assert [p.name for p in created] == ["p4"]

    p1 = (await in_thread(toxiproxy.Toxiproxy().get_proxy, "p1"))
    await in_thread(p1.add_toxic, type="timeout", attributes={"timeout": 0})
    assert await in_thread(toxiproxy.Toxiproxy().reset) is True
    after = (await raw("GET", "/proxies", api_port)).json()
    assert all(p["enabled"] and p["toxics"] == [] for p in after.values())
    stream = await connect(after["p2"]["listen"])  # p2 was disabled; reset enabled it
    assert await roundtrip(stream, b"ok") == b"ok"


async def test_malformed_http_gets_400_and_server_keeps_serving(api_port: int) -> None:
    for garbage in (b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nbad header line\r\n\r\n"):
        stream = await trio.open_tcp_stream("127.0.0.1", api_port)
        await stream.send_all(garbage)
        answer = await read_to_eof(stream)
        assert answer.startswith(b"HTTP/1.1 4"), answer
        assert b'"status": 400' in answer
    # A half-sent request that then hangs up does not hurt either.
    stream = await trio.open_tcp_stream("127.0.0.1", api_port)
    await stream.send_all(b"POST /proxies HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    await stream.aclose()
    assert (await raw("GET", "/version", api_port)).json() == {"version": VERSION}


async def test_keep_alive_serves_many_requests_on_one_connection(api_port: int) -> None:
    with requests.Session() as session:
        for _ in range(5):
            r = await in_thread(session.get, f"http://127.0.0.1:{api_port}/proxies", timeout=5)
            assert r.status_code == 200 and r.json() == {}


# -- traffic ------------------------------------------------------------------------------------


async def test_latency_is_added(proxy: toxiproxy.Proxy) -> None:
    stream = await connect(proxy.listen)
    assert await roundtrip(stream, b"warm") == b"warm"
    await in_thread(proxy.add_toxic, type="latency", attributes={"latency": 150})
    start = trio.current_time()
    assert await roundtrip(stream, b"slow") == b"slow"  # an existing connection is affected
    assert trio.current_time() - start >= 0.14


async def test_timeout_zero_hangs_without_refusing_then_heal(proxy: toxiproxy.Proxy) -> None:
    held = await connect(proxy.listen)
    assert await roundtrip(held, b"before") == b"before"
    for stream in ("upstream", "downstream"):
        await in_thread(proxy.add_toxic, type="timeout", stream=stream,
                        attributes={"timeout": 0})
    assert await roundtrip(held, b"during", timeout=0.3) == b""  # in flight: nothing arrives
    fresh = await connect(proxy.listen)  # accepted, not refused...
    assert await roundtrip(fresh, b"new", timeout=0.3) == b""  # ...but nothing flows
    for stream in ("upstream", "downstream"):
        await in_thread(proxy.destroy_toxic, f"timeout_{stream}")
    # Healing closes the held connections (Toxiproxy's cleanup); dropped bytes never arrive.
    assert await read_to_eof(held) == b""
    assert await read_to_eof(fresh) == b""
    healed = await connect(proxy.listen)
    assert await roundtrip(healed, b"after") == b"after"


async def test_timeout_with_a_duration_closes(proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="timeout", attributes={"timeout": 100})
    stream = await connect(proxy.listen)
    await stream.send_all(b"x")
    start = trio.current_time()
    assert await read_to_eof(stream) == b""
    assert trio.current_time() - start >= 0.09


async def test_toxicity_zero_never_applies(proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="timeout", toxicity=0.0, attributes={"timeout": 0})
    stream = await connect(proxy.listen)
    assert await roundtrip(stream, b"through") == b"through"


async def test_limit_data_closes_after_n_bytes(proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="limit_data", attributes={"bytes": 10})
    stream = await connect(proxy.listen)
    await stream.send_all(b"0123456789abcdefghij")
    assert await read_to_eof(stream) == b"0123456789"


async def test_reset_peer_resets(proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="reset_peer", stream="upstream",
                    attributes={"timeout": 0})
    stream = await connect(proxy.listen)
    await stream.send_all(b"boom")
    with pytest.raises(trio.BrokenResourceError) as info:
        with trio.fail_after(3):
            while await stream.receive_some(100):
                pass
    assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_bandwidth_limits(proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="bandwidth", attributes={"rate": 100})
    stream = await connect(proxy.listen)
    data = bytes(range(256)) * 160  # 40 KB at 100 KB/s: about 0.4 s
    start = trio.current_time()
    assert await roundtrip(stream, data, timeout=5) == data
    assert trio.current_time() - start >= 0.3


async def test_slicer_delivers_every_byte(proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="slicer", stream="upstream",
                    attributes={"average_size": 64, "size_variation": 32, "delay": 50})
    stream = await connect(proxy.listen)
    data = bytes(range(256)) * 40
    assert await roundtrip(stream, data, timeout=5) == data


async def test_slow_close_delays_the_close(proxy: toxiproxy.Proxy) -> None:
    await in_thread(proxy.add_toxic, type="slow_close", attributes={"delay": 200})
    stream = await connect(proxy.listen)
    assert await roundtrip(stream, b"bye") == b"bye"
    await stream.send_eof()  # echo server then closes; the close reaches us 200 ms late
    start = trio.current_time()
    assert await read_to_eof(stream) == b""
    assert trio.current_time() - start >= 0.19


async def test_dead_upstream_closes_the_client(api_port: int) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()  # nothing listens there now
    p = await in_thread(toxiproxy.Toxiproxy().create, upstream=dead, name="dead")
    stream = await connect(p.listen)
    assert await read_to_eof(stream) == b""


async def test_command_line_server_process() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "nemesis.proxy", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1)
        url = line.decode().split()[-1]
        assert url.startswith("http://127.0.0.1:")
        r = await in_thread(requests.get, url + "/version", timeout=5)
        assert r.json() == {"version": VERSION}
    finally:
        process.terminate()
        with trio.fail_after(10):
            await process.wait()
