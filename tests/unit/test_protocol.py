"""Frame codec and request validation: round trips, any chunking, and every kind of bad input."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import protocol
from node.protocol import (
    MAX_FRAME_BYTES,
    FrameDecoder,
    InvalidRequest,
    ProtocolError,
    encode_frame,
    validate_request,
)

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=50),
    st.binary(max_size=50),
    st.booleans(),
    st.floats(allow_nan=False),
    st.none(),
)
messages = st.dictionaries(
    st.text(max_size=10),
    st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4), max_leaves=10),
    max_size=6,
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@given(st.lists(messages, max_size=5), st.lists(st.integers(min_value=0), max_size=10))
def test_round_trip_in_any_chunking(msgs: list[dict], cuts: list[int]) -> None:
    data = b"".join(encode_frame(m) for m in msgs)
    dec = FrameDecoder()
    got = []
    for chunk in _split(data, cuts):
        dec.feed(chunk)
        got.extend(dec.messages())
    assert got == msgs
    assert dec.buffered == 0


@given(messages, st.integers(min_value=1))
def test_truncated_frame_is_incomplete_not_an_error(msg: dict, cut: int) -> None:
    data = encode_frame(msg)
    dec = FrameDecoder()
    dec.feed(data[: cut % len(data)])
    assert dec.next_message() is None


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_error(data: bytes) -> None:
    dec = FrameDecoder()
    dec.feed(data)
    try:
        dec.messages()
    except ProtocolError as exc:
        assert exc.name == "ProtocolError" and str(exc)


def test_huge_length_prefix_refused_before_body() -> None:
    dec = FrameDecoder()
    dec.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))
    with pytest.raises(ProtocolError, match="exceeds MAX_FRAME_BYTES"):
        dec.next_message()
    # The decoder stays failed: the stream is out of sync.
    dec.feed(encode_frame({"id": 1}))
    with pytest.raises(ProtocolError):
        dec.next_message()
    assert dec.buffered == 0


def test_bad_msgpack_and_non_map_are_named() -> None:
    dec = FrameDecoder()
    dec.feed(struct.pack(">I", 1) + b"\xc1")  # 0xc1 is "never used" in msgpack
    with pytest.raises(ProtocolError, match="undecodable msgpack"):
        dec.next_message()
    dec = FrameDecoder()
    body = msgpack.packb([1, 2])
    dec.feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(ProtocolError, match="must be a msgpack map"):
        dec.next_message()
    dec = FrameDecoder()
    body = msgpack.packb({"a": 1}) + b"\x01"
    dec.feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(ProtocolError, match="undecodable"):
        dec.next_message()


def test_encode_refuses_unencodable_and_oversized() -> None:
    with pytest.raises(ProtocolError, match="cannot be encoded"):
        encode_frame({"x": object()})
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_frame({"x": b"\0" * (MAX_FRAME_BYTES + 1)})


def test_errors_round_trip_by_name() -> None:
    err = protocol.WriteTimeout("2 of 2 required, 1 received", received=1, required=2)
    resp = protocol.error_response(7, err)
    back = protocol.error_from_wire(resp["error"])
    assert type(back) is protocol.WriteTimeout
    assert back.details == {"received": 1, "required": 2}
    unknown = protocol.error_from_wire({"name": "Weird", "message": "x"})
    assert type(unknown) is protocol.ServerError and "Weird" in str(unknown)
    assert type(protocol.error_from_wire("junk")) is protocol.ServerError


def _put(**kw: object) -> dict:
    base = {"id": 1, "op": "put", "keyspace": "ks", "table": "t", "key": "k", "columns": {"c": 1}}
    base.update(kw)
    return base


def test_valid_requests_are_normalised() -> None:
    req = validate_request(_put(consistency="quorum"))
    assert req["consistency"] == "QUORUM" and req["key_bytes"] == b"k"
    assert validate_request(_put(key=42))["key_bytes"] == b"42"
    req = validate_request({"id": 2, "op": "get", "keyspace": "ks", "table": "t", "key": b"\x00"})
    assert req["consistency"] == "ONE" and req["columns"] is None
    validate_request(
        {
            "id": 3,
            "op": "batch",
            "keyspace": "ks",
            "table": "t",
            "key": "k",
            "mutations": [{"op": "put", "columns": {"a": "x"}, "ttl": 5}, {"op": "delete", "columns": ["b"]}, {"op": "delete"}],
        }
    )


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        ({"op": "put"}, "'id'"),
        ({"id": True, "op": "put"}, "'id'"),
        ({"id": 1}, "'op'"),
        ({"id": 1, "op": "frobnicate"}, "unknown op"),
        (_put(keyspace=None), "keyspace"),
        (_put(keyspace="a/b"), "ASCII letters"),
        (_put(table=5), "table must be a string"),
        (_put(key=None), "key must be"),
        (_put(key=1.5), "key must be"),
        (_put(key=""), "empty"),
        (_put(columns=[]), "map"),
        (_put(columns={}), "empty"),
        (_put(columns={"c": None}), "nil"),
        (_put(columns={"c": [1]}), "must be int"),
        (_put(columns={"c": float("nan")}), "NaN"),
        (_put(columns={"c": b"x" * (protocol.MAX_VALUE_BYTES + 1)}), "MAX_VALUE_BYTES"),
        (_put(consistency="MOST"), "unknown consistency"),
        (_put(consistency=3), "consistency"),
        (_put(timestamp=-1), "timestamp"),
        (_put(timestamp="now"), "timestamp"),
        (_put(ttl=0), "ttl"),
        ({"id": 1, "op": "get", "keyspace": "ks", "table": "t", "key": "k", "limit": 0}, "limit"),
        ({"id": 1, "op": "get", "keyspace": "ks", "table": "t", "key": "k", "consistency": "ANY"}, "write-only"),
        ({"id": 1, "op": "get", "keyspace": "ks", "table": "t", "key": "k", "columns": "c"}, "list"),
        ({"id": 1, "op": "batch", "keyspace": "ks", "table": "t", "key": "k", "mutations": []}, "empty"),
        ({"id": 1, "op": "batch", "keyspace": "ks", "table": "t", "key": "k", "mutations": [{"op": "x"}]}, "'put' or 'delete'"),
        ({"id": 1, "op": "create_keyspace", "name": "ks"}, "replication"),
    ],
)
def test_invalid_requests_name_the_problem(msg: dict, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        validate_request(msg)


@settings(max_examples=300)
@given(messages)
def test_validate_never_crashes_on_arbitrary_maps(msg: dict) -> None:
    try:
        validate_request(msg)
    except InvalidRequest as exc:
        assert str(exc)


@given(st.sampled_from(["put", "get", "delete", "batch", "create_table", "getendpoints"]), messages)
def test_validate_never_crashes_on_arbitrary_fields_of_known_ops(op: str, extra: dict) -> None:
    msg = {"keyspace": "ks", "table": "t", "key": "k", **extra, "id": 1, "op": op}
    try:
        validate_request(msg)
    except InvalidRequest as exc:
        assert str(exc)


@given(scalars.filter(lambda v: v is not None))
def test_values_round_trip_through_storage_bytes(value: object) -> None:
    protocol.check_value(value, "v")
    assert protocol.decode_value(protocol.encode_value(value)) == value
