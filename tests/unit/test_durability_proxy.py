"""Fault proxy hardening: numeric toxic attributes outside Toxiproxy's Go int64 range are 400,
and a toxic whose creation fails leaves nothing installed (traffic keeps flowing)."""

from __future__ import annotations

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
