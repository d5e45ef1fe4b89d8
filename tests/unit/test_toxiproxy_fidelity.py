"""Where campaigns meet a real Toxiproxy 2.12 (issue 18): an empty /populate answered with
"proxies": null, link proxies removed from an external server at teardown, and the noop toxic."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import trio

from harness.deploy import LocalDeployment
from nemesis.proxy import serve_proxy_api
from nemesis.proxy_client import ProxyClient
from tests.unit.echo import echo_handler
from tests.unit.test_proxy_client import echoes


@pytest.fixture
async def api_url(nursery: trio.Nursery) -> str:
    port = await nursery.start(serve_proxy_api, "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


async def test_an_empty_populate_answered_with_null_is_no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    async def toxiproxy_2_12(self: ProxyClient, method: str, path: str, body: Any) -> tuple[int, bytes]:
        assert (method, path, body) == ("POST", "/populate", [])
        return 201, b'{"proxies":null}\n'

    monkeypatch.setattr(ProxyClient, "_exchange", toxiproxy_2_12)
    assert await ProxyClient("http://127.0.0.1:8474").create_proxies({}) == {}


async def test_teardown_removes_the_link_proxies_from_an_external_server(api_url: str, tmp_path: Path) -> None:
    deployment = LocalDeployment(3, tmp_path, "secret", 1, commitlog_sync="periodic", faults={}, toxiproxy=api_url)
    client = ProxyClient(api_url)
    await client.create_proxies({"someone_elses": ("127.0.0.1:0", "127.0.0.1:9")})
    await client.create_proxies(deployment.cluster.proxies())
    assert len(await client.proxies()) == 1 + 6
    await deployment.teardown(False, tmp_path)
    assert list(await client.proxies()) == ["someone_elses"]  # ours gone, the others' left alone


async def test_a_noop_toxic_is_accepted_and_passes_traffic(api_url: str, nursery: trio.Nursery) -> None:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo_handler, 0, host="127.0.0.1"))
    upstream = "127.0.0.1:%d" % listeners[0].socket.getsockname()[1]
    client = ProxyClient(api_url)
    listen = (await client.create_proxies({"p": ("127.0.0.1:0", upstream)}))["p"]
    await client._call("add noop", "p", "post", "/proxies/p/toxics", {"name": "nothing", "type": "noop"})
    toxics = (await client.proxies())["p"]["toxics"]
    assert [(t["name"], t["type"], t["attributes"]) for t in toxics] == [("nothing", "noop", {})]
    assert await echoes(listen)



async def test_an_updated_limit_data_keeps_counting_the_bytes_already_sent(api_url: str, nursery: trio.Nursery) -> None:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo_handler, 0, host="127.0.0.1"))
    upstream = "127.0.0.1:%d" % listeners[0].socket.getsockname()[1]
    client = ProxyClient(api_url)
    listen = (await client.create_proxies({"p": ("127.0.0.1:0", upstream)}))["p"]
    await client._call("add", "p", "post", "/proxies/p/toxics",
                       {"name": "cap", "type": "limit_data", "stream": "downstream", "attributes": {"bytes": 10}})
    host, port = listen.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"123456")
        got = b""
        with trio.fail_after(5):
            while len(got) < 6:
                got += await stream.receive_some(100)
        assert got == b"123456"
        await client._call("update", "p", "post", "/proxies/p/toxics/cap", {"attributes": {"bytes": 12}})
        await stream.send_all(b"abcdefghij")
        rest = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(100):
                rest += chunk
    assert rest == b"abcdef"  # 12 in all: 6 more, then the connection closes


async def test_populate_with_a_name_twice_keeps_the_last_entry(api_url: str) -> None:
    client = ProxyClient(api_url)
    body = [{"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"},
            {"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:10"}]
    answer = await client._call("populate", "p", "post", "/populate", body)
    assert [(p["name"], p["upstream"]) for p in answer["proxies"]] == [("p", "127.0.0.1:10")]
    assert (await client.proxies())["p"]["upstream"] == "127.0.0.1:10"
