"""The orjson read path of history.jsonl accepts and refuses exactly what json did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import history
from harness.history import HistoryError, HistoryWriter, Op, read_jsonl

BASE = '"index":{i},"time":{i},"process":1,"type":"ok","f":"read","key":1'


def _write(path: Path, lines: list[str | bytes], end: bytes = b"\n") -> Path:
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + end)
    return path


def test_lines_only_json_takes_parse_as_json_does(tmp_path: Path) -> None:
    values = ["NaN", "Infinity", str(2**70), '"\\ud800"', '{"1":2}', "[1.5e300, -0.0]", '"é"']
    lines = ["{" + BASE.format(i=i) + f',"value":{v}' + "}" for i, v in enumerate(values)]
    ops = list(read_jsonl(_write(tmp_path / "h.jsonl", ["", *lines, "   "])))
    want = [json.loads(v) for v in values]
    assert [op.value for op in ops[1:] if op.value == op.value] == [w for w in want[1:] if w == w]
    assert ops[0].value != ops[0].value  # NaN
    assert [op.index for op in ops] == list(range(len(values)))


def test_bad_utf8_and_bad_fields_name_the_line(tmp_path: Path) -> None:
    good = ("{" + BASE.format(i=0) + "}").encode()
    with pytest.raises(HistoryError, match=r"h.jsonl:2: not valid UTF-8"):
        list(read_jsonl(_write(tmp_path / "h.jsonl", [good, b'{"index":\xff}'])))
    with pytest.raises(HistoryError, match=r"b.jsonl:2: field 'type' must be one of"):
        list(read_jsonl(_write(tmp_path / "b.jsonl", [good, good.replace(b'"ok"', b'["ok"]')])))
    with pytest.raises(HistoryError, match=r"n.jsonl:1: nested deeper than 100 levels"):
        list(read_jsonl(_write(tmp_path / "n.jsonl", [b'{"index":0,"value":' + b"[" * 150 + b"]" * 150 + b"}"])))
    with pytest.raises(HistoryError, match=r"j.jsonl:1: not valid JSON"):
        list(read_jsonl(_write(tmp_path / "j.jsonl", [b"{oops", good])))
    # Half a line at the very end (an interrupted run) is dropped, as before.
    assert len(list(read_jsonl(_write(tmp_path / "t.jsonl", [good, b'{"index":1,"ti'], end=b"")))) == 1


def test_lines_across_read_blocks_and_the_line_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "_READ_BLOCK_BYTES", 7)
    lines = ["{" + BASE.format(i=i) + f',"value":"{"x" * i}"' + "}" for i in range(40)]
    path = _write(tmp_path / "h.jsonl", lines, end=b"")
    assert [op.value for op in read_jsonl(path)] == ["x" * i for i in range(40)]
    monkeypatch.setattr(history, "MAX_LINE_BYTES", 100)
    with pytest.raises(HistoryError, match=r"h.jsonl:\d+: line longer than 100 bytes"):
        list(read_jsonl(path))


def test_writer_lines_read_back_equal(tmp_path: Path) -> None:
    ops = [Op(0, 5, 1, "invoke", "write", key=[1, "k"], value={"a": [1, 2]}, extra={"note": "ü"}),
           Op(1, 6, 1, "ok", "write", key=[1, "k"], value=2**70, timestamp=7, node="n1"),
           Op(2, 7, "nemesis", "info", "start", value={3: "non-string key"})]
    with HistoryWriter(tmp_path / "h.jsonl") as w:
        for op in ops:
            w.write(op)
    back = list(read_jsonl(tmp_path / "h.jsonl"))
    assert back[:2] == ops[:2] and back[2].value == {"3": "non-string key"}
