"""Fault proxy hardening: numeric toxic attributes outside Toxiproxy's Go int64 range are 400,
and a toxic whose creation fails leaves nothing installed (traffic keeps flowing)."""

from __future__ import annotations

import functools

import pytest
import toxiproxy
import trio

import nemesis.proxy as proxy_mod
from nemesis.proxy import MAX_TOXIC_ATTRIBUTE
from tests.unit.test_proxy_server import api_port, connect, echo_addr, proxy, raw, roundtrip  # noqa: F401

HUGE = int("9" * 400)


async def _toxics(port: int) -> list[str]:
    return [t["name"] for t in (await raw("GET", "/proxies/echo/toxics", port)).json()]


@pytest.mark.parametrize("body", [
    {"type": "latency", "attributes": {"latency": HUGE}},
    {"type": "latency", "attributes": {"jitter": MAX_TOXIC_ATTRIBUTE + 1}},
    {"type": "timeout", "attributes": {"timeout": HUGE}},
    {"type": "bandwidth", "attributes": {"rate": -1}},
    {"type": "slicer", "attributes": {"average_size": 10, "delay": HUGE}},
    {"type": "latency", "toxicity": HUGE},
])
async def test_out_of_range_attributes_are_400_and_nothing_is_installed(
        api_port: int, proxy: toxiproxy.Proxy, body: dict) -> None:  # noqa: F811
    stream = await connect(proxy.listen)  # a live connection the toxic would attach to
    r = await raw("POST", "/proxies/echo/toxics", api_port, json=body)
    assert r.status_code == 400, r.text
    assert "Go int64" in r.json()["error"] or "between 0 and 1" in r.json()["error"]
    assert await _toxics(api_port) == []
    assert await roundtrip(stream, b"still flowing") == b"still flowing"
    await stream.aclose()


async def test_the_int64_maximum_is_accepted(api_port: int, proxy: toxiproxy.Proxy) -> None:  # noqa: F811
    r = await raw("POST", "/proxies/echo/toxics", api_port,
                  json={"type": "timeout", "attributes": {"timeout": MAX_TOXIC_ATTRIBUTE}})
    assert r.status_code == 200 and r.json()["attributes"]["timeout"] == MAX_TOXIC_ATTRIBUTE


async def test_a_toxic_that_fails_to_attach_is_rolled_back(api_port: int, proxy: toxiproxy.Proxy,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    stream = await connect(proxy.listen)
    assert await roundtrip(stream, b"x") == b"x"
    real_attach = proxy_mod._Link.attach

    def failing_attach(self, toxic):  # type: ignore[no-untyped-def]
        real_attach(self, toxic)
        raise OverflowError("simulated failure while attaching")

    monkeypatch.setattr(proxy_mod._Link, "attach", failing_attach)
    r = await raw("POST", "/proxies/echo/toxics", api_port, json={"type": "timeout", "attributes": {"timeout": 0}})
    assert r.status_code == 500
    monkeypatch.undo()
    assert await _toxics(api_port) == []
    # The timeout toxic would black-hole the link; with nothing installed the echo answers.
    assert await roundtrip(stream, b"after") == b"after"
    await stream.aclose()


async def test_the_api_serves_only_requests_with_the_harness_token(nursery: trio.Nursery) -> None:
    from nemesis.proxy import serve_proxy_api
    from nemesis.proxy_client import ProxyClient, ProxyError

    port = await nursery.start(functools.partial(serve_proxy_api, "127.0.0.1", 0, token="harness-token"))
    r = await raw("GET", "/proxies", port)
    assert r.status_code == 401 and "x-ringlab-token" in r.json()["error"]
    r = await raw("GET", "/proxies", port, headers={"x-ringlab-token": "guess"})
    assert r.status_code == 401
    with pytest.raises(ProxyError, match="401"):
        await ProxyClient(f"http://127.0.0.1:{port}").version()
    assert (await ProxyClient(f"http://127.0.0.1:{port}", token="harness-token").version()).startswith("2.")


def test_the_api_refuses_a_non_loopback_address_without_a_token() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RINGLAB_PROXY_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "nemesis.proxy", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 2 and "without a token" in proc.stderr
