"""Blocks of lines with only an Op's fields decode as the lean _Core records, blocks with the
documented extras (a fail's message) as _Line records; both read back as read_jsonl's Ops."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import history
from harness.history import HistoryFile, HistoryWriter, Op, as_op, read_jsonl, read_jsonl_lines


def _write(path: Path, ops: list[Op]) -> Path:
    with HistoryWriter(path) as w:
        for op in ops:
            w.write(op)
    return path


def _ops(n: int, message_every: int) -> list[Op]:
    ops = []
    for i in range(n):
        extra = {"message": f"timed out {i}"} if message_every and i % message_every == 0 else {}
        ops.append(Op(i, i, i % 7, "info" if extra else "ok", "read", key=i % 3, value=[i, "x"],
                      node="n1", cl="ONE", error="ReadTimeout" if extra else None, extra=extra))
    return ops


@pytest.mark.parametrize("message_every", [0, 7, 5_000])
def test_core_and_line_blocks_read_as_the_same_ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   message_every: int) -> None:
    monkeypatch.setattr(history, "_READ_BLOCK_BYTES", 4096)  # many blocks
    monkeypatch.setattr(history, "_CORE_RETRY_BLOCKS", 3)
    ops = _ops(20_000, message_every)
    path = _write(tmp_path / "h.jsonl", ops)
    recs = list(read_jsonl_lines(path))
    assert [as_op(r) for r in recs] == list(read_jsonl(path)) == ops
    kinds = {type(r).__name__ for r in recs}
    records = HistoryFile(path).records()
    assert records is not None
    numbered = list(records)
    assert [as_op(r) for r in numbered] == ops
    assert [records.op(n) for n in range(0, len(ops), 997)] == ops[::997]
    if message_every == 0:
        assert kinds == {"_Core"}
    elif message_every == 7:
        assert kinds == {"_Line"}  # every block holds a message
    else:
        assert kinds == {"_Core", "_Line"}  # back to _Core after the retry countdown
        assert as_op(recs[5_000]).extra == {"message": "timed out 5000"}
