"""A faulted campaign's history (fail and info ops carry the client's `message`) is read on the
block-at-a-time fast path, and reads back the same operations as the line-by-line path."""

from __future__ import annotations

from pathlib import Path

from harness import history
from harness.history import HistoryWriter, Op, as_op, read_jsonl, read_jsonl_lines


def test_a_block_with_messages_takes_the_fast_path(tmp_path: Path) -> None:
    ops = [Op(0, 5, 1, "invoke", "read", key=1, node="n1", cl="QUORUM"),
           Op(1, 6, 1, "fail", "read", key=1, node="n1", cl="QUORUM", error="ReadTimeout",
              extra={"message": "QUORUM read: 1 of 2 required responses within 5 s"}),
           Op(2, 7, 2, "info", "write", key=3, value=4, error="ConnectionLost", extra={"message": "closed"})]
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        for op in ops:
            w.write(op)
    chunk = path.read_bytes()
    lines = chunk.split(b"\n")[:-1]
    fast = history._fast_block(lines, True, chunk)
    assert fast is not None and len(fast) == 3
    assert [as_op(r) for r in read_jsonl_lines(path)] == list(read_jsonl(path)) == ops
    assert as_op(fast[1]).extra == {"message": "QUORUM read: 1 of 2 required responses within 5 s"}
