"""The write path's storage fast paths (issue 17): validation of plain live cells, the single
record commit log append and the memtable insert give what the general code gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from node.runtime import Clock
from node.storage.cells import Cell, Mutation, RangeTombstone
from node.storage.commitlog import CommitLog
from node.storage.config import StorageConfig
from node.storage.engine import StorageEngine, _plainly_valid
from node.storage.errors import InvalidMutation
from node.storage.memtable import Memtable

_CFG = StorageConfig(commitlog_sync="periodic", max_value_bytes=8, max_column_name_bytes=12, max_key_bytes=6)

_TEXT = st.one_of(st.text(max_size=4), st.just("x" * 3), st.just("y" * 4), st.just("a\x00"), st.just("ééé"))
_CELLS = st.builds(
    Cell,
    st.one_of(_TEXT, st.integers(max_value=2), st.none()),
    st.one_of(st.binary(max_size=9), st.none(), st.text(max_size=2)),
    st.one_of(st.integers(min_value=-(2**64), max_value=2**64), st.booleans(), st.floats(allow_nan=False)),
    st.one_of(st.none(), st.integers(min_value=-1, max_value=3)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
)
_MUTATIONS = st.builds(
    Mutation,
    st.one_of(st.binary(max_size=7), st.text(max_size=2)),
    st.lists(st.one_of(_CELLS, st.integers()), max_size=3),
    st.one_of(st.none(), st.none(), st.integers(min_value=0, max_value=5)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
    st.one_of(st.just([]), st.just([]), st.lists(st.builds(RangeTombstone, st.just("p:"), st.integers(0, 5)), max_size=1)),
)

# Mostly plain writes, each field now and then just past a limit or of the wrong kind.
_NEAR_PLAIN = st.builds(
    Mutation,
    st.one_of(st.binary(min_size=1, max_size=6), st.binary(min_size=7, max_size=7), st.just(b"")),
    st.lists(st.builds(
        Cell,
        st.one_of(st.sampled_from(["v", "abc", "ééé", "yyy"]), st.just("y" * 4), st.just("a\x00"), st.just("")),
        st.one_of(st.binary(max_size=8), st.binary(min_size=9, max_size=9), st.none()),
        st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.just(2**63), st.just(True)),
        st.one_of(st.none(), st.none(), st.none(), st.just(5)),
        st.one_of(st.none(), st.none(), st.none(), st.just(5)),
    ), min_size=1, max_size=3),
)


def _outcome(fn: Any, m: Mutation) -> Any:
    try:
        return fn(m, 1000)
    except InvalidMutation as exc:
        return ("refused", str(exc))


@settings(max_examples=400, deadline=None)
@given(st.one_of(_NEAR_PLAIN, _MUTATIONS))
def test_a_plainly_valid_mutation_is_one_the_full_checks_return_unchanged(tmp_path_factory: Any, m: Mutation) -> None:
    engine = StorageEngine(Path("unopened"), _CFG, Clock())  # validate needs only the config and the clock
    if _plainly_valid(m, _CFG):
        assert engine._validate_all(m, 1000) is m
    assert _outcome(engine.validate, m) == _outcome(engine._validate_all, m)


def test_common_writes_are_plainly_valid_and_doubtful_ones_are_not() -> None:
    plain = Mutation(b"k1", [Cell("v", b"\x01", 5), Cell("w", b"", 6)])
    assert _plainly_valid(plain, _CFG)
    for m in (Mutation(b"k1", [Cell("v", None, 5)]),  # tombstone: its deletion time is filled in
              Mutation(b"k1", [Cell("v", b"x", 5, 10)]),  # TTL
              Mutation(b"k1", [Cell("v", b"x", True)]),  # bool timestamp: refused by name
              Mutation(b"k1", [Cell("v", b"x", 5)], 3), Mutation(b"k1", []), Mutation(b"k" * 7, [Cell("v", b"", 1)])):
        assert not _plainly_valid(m, _CFG)


def test_single_appends_roll_segments_and_replay_in_order_with_batched_ones(tmp_path: Path) -> None:
    log = CommitLog(tmp_path, sync_mode="periodic", segment_bytes=200, group_window_s=0.0, clock=Clock())
    log.start()
    want: list[Any] = []
    positions: list[int] = []
    for i in range(40):
        payload = msgpack.packb([1, ["k", i, "x" * (i % 7)]], use_bin_type=True)
        want.append(["k", i, "x" * (i % 7)])
        if i % 3:
            positions.append(log.append_payload(1, payload))
        else:
            got, error = log.append_payloads([(1, payload)])
            assert error is None
            positions += got
    assert positions == sorted(positions) and len(set(positions)) == 40
    assert log.current_position() == positions[-1]
    assert len(list(tmp_path.iterdir())) > 3  # the 200-byte segments rolled
    log.close()
    again = CommitLog(tmp_path, sync_mode="periodic", segment_bytes=200, group_window_s=0.0, clock=Clock())
    assert [(pos, obj) for pos, _, obj in again.replay()] == list(zip(positions, want))


def test_the_memtable_tracks_cells_bytes_and_timestamp_bounds() -> None:
    mt = Memtable(lambda k: k)
    mt.apply(Mutation(b"a", [Cell("x", b"12", 7), Cell("y", b"1", 3), Cell("z", None, 9, None, 1)]))
    mt.apply(Mutation(b"a", [Cell("x", b"1", 5), Cell("y", b"123", 4)]))  # x older: kept; y newer: replaced
    mt.apply(Mutation(b"b", [Cell("x", b"", 11)]))
    assert (mt.cells, mt.min_timestamp, mt.max_timestamp) == (4, 3, 11)
    assert mt.parts[b"a"].cells["x"].value == b"12" and mt.parts[b"a"].cells["y"].value == b"123"
    assert mt.bytes == 2 * (200 + 1) + 4 * 120 + 3 + 2 + 1 + 1 + 2 + 0
