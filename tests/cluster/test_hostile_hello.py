"""Fixes found by bench/fuzz_protocol.py: an unauthenticated hello teaches no address, and a
msgpack depth bomb's error names what was wrong."""

from __future__ import annotations

import struct

import msgpack
import pytest
import trio

from node import protocol
from tests.cluster.test_messaging import echo, make, running, wait_for


def _frame(obj: object) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


async def test_an_unauthenticated_hello_teaches_no_address_an_authenticated_one_does() -> None:
    a, b = make("a"), make("b")
    b.register("echo", echo)
    async with trio.open_nursery() as nursery:
        port_a = await nursery.start(a.run)
        port_b = await nursery.start(b.run)
        # A stranger claims to be node "c" (and node "a") living elsewhere, then fails the proof.
        for claimed in ("c", "a"):
            stream = await trio.open_tcp_stream("127.0.0.1", port_b)
            await stream.send_all(_frame({"h": claimed, "a": ["127.0.0.9", 1], "n": b"\x01" * 16})
                                  + _frame({"m": b"\x00" * 32}))
            with trio.move_on_after(2):
                while await stream.receive_some(65536):
                    pass
            await stream.aclose()
        assert b.address_of("c") is None and b.address_of("a") is None
        # The real "a" connects (b has no address for it) and b learns where a listens.
        a.set_address("b", "127.0.0.1", port_b)
        assert (await a.request("b", "echo", {"x": 1}, timeout=5))["echo"] == {"x": 1}
        await wait_for(lambda: b.address_of("a") is not None)
        assert b.address_of("a") == ("127.0.0.1", port_a)
        nursery.cancel_scope.cancel()


def test_a_depth_bomb_is_a_protocol_error_naming_the_nesting() -> None:
    with pytest.raises(protocol.ProtocolError, match="nested deeper than the decoder's limit"):
        protocol.decode_body(b"\x91" * 100_000 + b"\x01")


@pytest.mark.parametrize("value", [-1, 1.5, [1], {"a": 1}, b"x", True, ""])
def test_flush_and_compact_name_a_keyspace_or_table_that_is_no_name(value: object) -> None:
    for op in ("flush", "compact"):
        for field in ("keyspace", "table"):
            with pytest.raises(protocol.InvalidRequest, match=f"{op}: {field} must"):
                protocol.optional_table({field: value}, op)
    assert protocol.optional_table({}, "flush") == (None, None)
    assert protocol.optional_table({"keyspace": "ks", "table": "t"}, "compact") == ("ks", "t")


async def test_a_hello_with_a_huge_node_id_is_refused_with_a_short_log_line(caplog: pytest.LogCaptureFixture) -> None:
    b = make("b")
    async with trio.open_nursery() as nursery:
        port_b = await nursery.start(b.run)
        stream = await trio.open_tcp_stream("127.0.0.1", port_b)
        await stream.send_all(_frame({"h": "x" * 65536, "a": ["127.0.0.9", 1], "n": b"\x01" * 16})
                              + _frame({"m": b"\x00" * 32}))
        with trio.move_on_after(2):
            while await stream.receive_some(65536):
                pass
        await stream.aclose()
        await wait_for(lambda: any("refusing internode connection" in r.getMessage() for r in caplog.records))
        nursery.cancel_scope.cancel()
    refusals = [r.getMessage() for r in caplog.records if "refusing internode connection" in r.getMessage()]
    assert refusals and all(len(m) < 1000 for m in refusals), [len(m) for m in refusals]
    assert "more characters" in refusals[0]
