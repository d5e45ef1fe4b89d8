"""The put fast path of request validation (issue 17) accepts exactly what the general path
accepts, with the same normalised result, and leaves everything doubtful to it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import protocol
from node.protocol import InvalidRequest, _fast_put, _validate_general, validate_request

_NAMES = st.sampled_from(["bench", "t", "ks_1", "", "bad-name", "x" * 48, "x" * 49, "é", "a\x00", 7, None, b"t"])
_VALUES = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**65), st.booleans(), st.floats(allow_nan=True),
    st.text(max_size=8), st.binary(max_size=8), st.none(), st.lists(st.integers(), max_size=2),
    st.just("v" * (protocol.MAX_VALUE_BYTES // 4 + 1)), st.just(b"v" * (protocol.MAX_VALUE_BYTES + 1)),
)
_COLUMN_NAMES = st.one_of(st.text(max_size=6), st.just("a\x00b"), st.just("n" * (protocol.MAX_NAME_BYTES // 4 + 1)),
                          st.integers(max_value=3), st.binary(max_size=3))
_MISSING = object()


def _general(msg: dict[str, Any]) -> Any:
    try:
        return _validate_general(msg)
    except InvalidRequest as exc:
        return ("refused", exc.message)


@st.composite
def _puts(draw: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"op": "put"}
    fields = {
        "id": st.one_of(st.integers(min_value=-5, max_value=2**64), st.booleans(), st.text(max_size=2), st.none()),
        "keyspace": _NAMES,
        "table": _NAMES,
        "key": st.one_of(st.text(max_size=10), st.binary(max_size=4), st.integers(), st.booleans(), st.none(),
                         st.just("k" * (protocol.MAX_KEY_BYTES // 4 + 1))),
        "columns": st.one_of(st.dictionaries(_COLUMN_NAMES, _VALUES, max_size=4), st.lists(st.text(), max_size=2),
                             st.none()),
        "consistency": st.one_of(st.sampled_from(["QUORUM", "quorum", "One", "ANY", "bogus", ""]), st.integers(),
                                 st.none(), st.booleans()),
        "ttl": st.one_of(st.integers(min_value=-2, max_value=20 * 365 * 86400 + 2), st.booleans(), st.floats(), st.none()),
        "timestamp": st.one_of(st.integers(min_value=-2, max_value=2**64), st.booleans(), st.text(max_size=2), st.none()),
        "extra": st.one_of(st.integers(), st.none()),
    }
    for name, strategy in fields.items():
        value = draw(st.one_of(st.just(_MISSING), strategy))
        if value is not _MISSING:
            msg[name] = value
    return msg


@settings(max_examples=300, deadline=None)
@given(_puts())
def test_the_fast_path_gives_the_general_result_or_leaves_it_to_the_general_path(msg: dict[str, Any]) -> None:
    fast = _fast_put(msg)
    if fast is not None:
        assert fast == _validate_general(msg)
    assert (validate_request(msg) if fast is not None else _general(msg)) == _general(msg)


@pytest.mark.parametrize("msg", [
    {"id": 1, "op": "put", "keyspace": "bench", "table": "t", "key": "k1", "columns": {"v": 1}},
    {"id": 2, "op": "put", "keyspace": "bench", "table": "t", "key": "ключ", "columns": {"a": "x", "b": b"y", "c": 1.5},
     "consistency": "quorum", "ttl": 60, "timestamp": 5, "extra": [1]},
])
def test_common_puts_take_the_fast_path(msg: dict[str, Any]) -> None:
    fast = _fast_put(msg)
    assert fast is not None and fast == _validate_general(msg)
    assert fast["key_bytes"] == msg["key"].encode() and fast["consistency"] == msg.get("consistency", "ONE").upper()


@pytest.mark.parametrize("change", [
    {"columns": {"v": True}},  # bool: valid, but left to the general path
    {"columns": {"v": float("nan")}}, {"columns": {"v": None}}, {"columns": {}}, {"key": 42}, {"key": b"k"},
    {"keyspace": "no-dash"}, {"consistency": "SOME"}, {"ttl": 0}, {"timestamp": -1}, {"id": True},
])
def test_doubtful_puts_go_to_the_general_path(change: dict[str, Any]) -> None:
    msg = {"id": 1, "op": "put", "keyspace": "bench", "table": "t", "key": "k1", "columns": {"v": 1}, **change}
    assert _fast_put(msg) is None
