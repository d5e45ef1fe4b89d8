"""The history model: JSONL writer/reader, EDN round-trip and Jepsen EDN, pairing, streaming memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkers.synth import generate
from harness.history import (
    HistoryError,
    HistoryWriter,
    Op,
    pair_ops,
    read_edn,
    read_history,
    read_jsonl,
    write_edn,
    write_jsonl,
)


def test_writer_flushes_every_op_so_a_reader_sees_it_while_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    w = HistoryWriter(path)
    w.write(Op(0, 10, 0, "invoke", "write", "k", 1))
    # Read through a separate file handle while the writer is still open.
    assert [op.value for op in read_jsonl(path)] == [1]
    w.write(Op(1, 20, 0, "ok", "write", "k", 1, node="n1", cl="QUORUM", timestamp=1234))
    ops = list(read_history(path))
    assert ops[1].timestamp == 1234 and ops[1].node == "n1" and ops[1].cl == "QUORUM"
    w.close()


def test_interrupted_last_line_is_ignored_but_corruption_elsewhere_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as w:
        w.write(Op(0, 10, 0, "invoke", "read", None, None))
    with open(path, "a") as f:
        f.write('{"index": 1, "time": 2')  # the process died mid-write
    assert len(list(read_jsonl(path))) == 1
    with open(path, "a") as f:
        f.write("\n" + json.dumps(Op(2, 30, 0, "ok", "read", None, 3).to_dict()) + "\n")
    with pytest.raises(HistoryError, match=r"history.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"index": 0, "time": 1, "process": 0, "type": "invoke"}', "missing field 'f'"),
        ('{"index": 0, "time": 1, "process": 0, "type": "done", "f": "read"}', "field 'type'"),
        ('{"index": 0, "time": "x", "process": 0, "type": "ok", "f": "read"}', "field 'time'"),
        ('{"index": 0, "time": 1, "process": 1.5, "type": "ok", "f": "read"}', "field 'process'"),
        ('[1, 2]', "expected an object"),
    ],
)
def test_malformed_ops_name_the_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(HistoryError, match=message) as e:
        list(read_history(path))
    assert "h.jsonl:1" in str(e.value)


def test_extra_fields_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"index":0,"time":1,"process":"nemesis","type":"info","f":"start-partition","key":null,'
                    '"value":["n1"],"grudge":{"n1":["n2"]}}\n')
    (op,) = read_history(path)
    assert op.process == "nemesis" and op.extra == {"grudge": {"n1": ["n2"]}}
    assert op.to_dict()["grudge"] == {"n1": ["n2"]}


_values = st.recursive(
    st.none() | st.integers(-10**12, 10**12) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@st.composite
def ops_lists(draw: st.DrawFn) -> list[Op]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        out.append(Op(
            index=i,
            time=draw(st.integers(0, 10**15)),
            process=draw(st.one_of(st.integers(0, 50), st.just("nemesis"))),
            type=draw(st.sampled_from(["invoke", "ok", "fail", "info"])),
            f=draw(st.sampled_from(["read", "write", "cas", "add", "start-partition", "odd f name"])),
            key=draw(st.one_of(st.none(), st.integers(0, 5), st.text(max_size=4))),
            value=draw(_values),
            node=draw(st.one_of(st.none(), st.sampled_from(["n1", "n2"]))),
            cl=draw(st.one_of(st.none(), st.sampled_from(["ONE", "QUORUM"]))),
            timestamp=draw(st.one_of(st.none(), st.integers(0, 2**62))),
            error=draw(st.one_of(st.none(), st.sampled_from(["WriteTimeout", "Unavailable"]))),
            extra=draw(st.dictionaries(st.sampled_from(["attempt", "latency-ms"]), st.integers(0, 9), max_size=2)),
        ))
    return out


@settings(max_examples=60, deadline=None)
@given(ops=ops_lists())
def test_edn_and_jsonl_round_trip(tmp_path_factory: pytest.TempPathFactory, ops: list[Op]) -> None:
    d = tmp_path_factory.mktemp("rt")
    write_edn(ops, d / "history.edn")
    assert list(read_history(d / "history.edn")) == ops
    write_jsonl(ops, d / "history.jsonl")
    assert list(read_history(d / "history.jsonl")) == ops


def test_reads_jepsen_edn_forms(tmp_path: Path) -> None:
    """Knossos-style vector of maps, keywords, sets, records, comments, independent tuples."""
    path = tmp_path / "history.edn"
    path.write_text(
        "; a Knossos history\n"
        "[{:process 0, :type :invoke, :f :write, :value [:x 3], :time 1}\n"
        " {:process 0, :type :ok, :f :write, :value [:x 3], :time 2}\n"
        " #jepsen.history.Op{:index 2, :time 3, :type :invoke, :process :nemesis, :f :start-partition,"
        " :value :majority}\n"
        " {:process 1, :type :invoke, :f :read, :value nil, :time 4}\n"
        " {:process 1, :type :fail, :f :read, :value nil, :time 5, :error [:timeout \"took too long\"]}\n"
        " {:process 2, :type :ok, :f :read, :value #{1 3 2}, :time 6 #_ :ignored-key #_ 1}]\n"
    )
    ops = list(read_edn(path))
    assert [o.type for o in ops] == ["invoke", "ok", "invoke", "invoke", "fail", "ok"]
    assert ops[0].value == ["x", 3] and ops[0].key is None
    assert ops[2].process == "nemesis" and ops[2].f == "start-partition" and ops[2].value == "majority"
    assert ops[4].error == "timeout"
    assert ops[5].value == [1, 2, 3]
    ind = list(read_history(path, independent=True))
    assert ind[0].key == "x" and ind[0].value == 3


def test_writes_jepsen_independent_tuples(tmp_path: Path) -> None:
    ops = [Op(0, 1, 0, "invoke", "write", "x", 3)]
    write_edn(ops, tmp_path / "h.edn", independent=True)
    text = (tmp_path / "h.edn").read_text()
    assert ':value ["x" 3]' in text and ":f :write" in text and ":type :invoke" in text
    assert list(read_history(tmp_path / "h.edn", independent=True))[0].key == "x"


def test_unreadable_edn_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.edn"
    path.write_text("{:type :invoke, :f :read :process 0\n")
    with pytest.raises(HistoryError, match="unclosed"):
        list(read_history(path))


def test_pair_ops_matches_per_process_and_reports_incomplete() -> None:
    ops = generate("register", n_ops=50, clients=4, seed=1)
    pairs = list(pair_ops(ops))
    assert len(pairs) == 50
    assert all(inv.process == comp.process and inv.f == comp.f for inv, comp in pairs if comp)
    pairs = list(pair_ops(ops[:-1]))
    assert pairs[-1][1] is None
    with pytest.raises(HistoryError, match="without an invocation"):
        list(pair_ops([Op(0, 1, 0, "ok", "read", None, 1)]))


def _peak_bytes_streaming(path: Path) -> tuple[int, int]:
    """(operations read, peak traced bytes) while streaming ``path`` through read_history."""
    tracemalloc.start()
    try:
        n = sum(1 for _ in read_history(path))
        return n, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_read_memory_is_bounded_on_a_large_history(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        line = '{"index":%d,"time":%d,"process":%d,"type":"ok","f":"write","key":%d,"value":%d,"timestamp":%d}\n'
        for i in range(30_000):
            f.write(line % (i, i * 1000, i % 50, i % 100, i, i))
    assert path.stat().st_size > 3_000_000
    n, peak = _peak_bytes_streaming(path)
    assert n == 30_000
    assert peak < 1_000_000, f"peak {peak} bytes while streaming a {path.stat().st_size}-byte history"
    # EDN parsing is slower (and ~10x slower again under tracemalloc): two small files, the second
    # three times the first; streaming keeps the peak where it was (it measures ~340 KB for both).
    peaks = []
    for count in (2_000, 6_000):
        edn = tmp_path / f"big-{count}.edn"
        write_edn((op for op in read_history(path) if op.index < count), edn)
        n, peak = _peak_bytes_streaming(edn)
        assert n == count
        peaks.append(peak)
    assert peaks[1] < peaks[0] * 1.25, f"EDN peak grew with the file: {peaks}"
