"""Long lines and tokens in history files: read whole however many blocks they span, refused by
name past MAX_LINE_BYTES, and without the cost growing with the square of their length.

The readers assemble a line (JSONL) or a token (EDN) that spans read blocks; the blocks are made
tiny here so that every line and token of a small file crosses several of them, and each
boundary case (a newline at a block's end, an escape split from the character it escapes) comes
up. A reader that re-joined or re-matched the whole unfinished line at every block took minutes
on one 50 MB value (a hostile or merely huge history): the 8 MB line below would then take some
2,000 joins of megabytes each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import history
from harness.history import HistoryError, Op, read_history, write_edn


def _ops(values: list[object]) -> list[Op]:
    ops = []
    for i, v in enumerate(values):
        ops.append(Op(2 * i, 10 * i, 0, "invoke", "write", 1, v))
        ops.append(Op(2 * i + 1, 10 * i + 5, 0, "ok", "write", 1, v))
    return ops


def _write_jsonl(ops: list[Op], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for op in ops:
            f.write(json.dumps({"index": op.index, "time": op.time, "process": op.process, "type": op.type,
                                "f": op.f, "key": op.key, "value": op.value}) + "\n")


VALUES: list[object] = ["x" * 50, 'a "quoted" \\ back\\slash', "", "y" * 3000, 'ends with \\', 'end"', 7]


@pytest.mark.parametrize("block", [1, 2, 7, 64, 4096])
def test_jsonl_lines_spanning_blocks_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(history, "_READ_BLOCK_BYTES", block)
    ops = _ops(VALUES)
    _write_jsonl(ops, tmp_path / "h.jsonl")
    assert [(o.index, o.value) for o in read_history(tmp_path / "h.jsonl")] == [(o.index, o.value) for o in ops]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 16])
def test_edn_tokens_spanning_chunks_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(history, "_EDN_CHUNK_CHARS", chunk)
    monkeypatch.setattr(history, "_EDN_REFILL_CHARS", max(1, chunk // 4))
    ops = _ops(VALUES)
    write_edn(ops, tmp_path / "h.edn")
    assert [(o.index, o.value) for o in read_history(tmp_path / "h.edn")] == [(o.index, o.value) for o in ops]


def test_a_line_past_the_limit_is_refused_by_its_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "_READ_BLOCK_BYTES", 512)
    monkeypatch.setattr(history, "MAX_LINE_BYTES", 10_000)
    ops = _ops(["short", "z" * 20_000])
    _write_jsonl(ops, tmp_path / "h.jsonl")
    with pytest.raises(HistoryError, match=r"h\.jsonl:3: line longer than 10000 bytes"):
        list(read_history(tmp_path / "h.jsonl"))
    # The same long line last in the file, without its newline.
    text = (tmp_path / "h.jsonl").read_text().rstrip("\n")
    (tmp_path / "h.jsonl").write_text(text)
    with pytest.raises(HistoryError, match=r"h\.jsonl:3: line longer than 10000 bytes"):
        list(read_history(tmp_path / "h.jsonl"))


def test_a_megabytes_long_value_reads_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 KB blocks under an 8 MB line (a join per block of everything so far: ~16 GB of copying)
    # and an 8 MB EDN string in 64 KB chunks (re-matched from its start at each: 128 passes).
    monkeypatch.setattr(history, "_READ_BLOCK_BYTES", 4096)
    big = "v" * (8 << 20)
    ops = _ops(["before", big, "after"])
    _write_jsonl(ops, tmp_path / "h.jsonl")
    assert [len(str(o.value)) for o in read_history(tmp_path / "h.jsonl")][2:4] == [len(big)] * 2
    write_edn(ops, tmp_path / "h.edn")
    assert [o.value for o in read_history(tmp_path / "h.edn")][4:] == ["after", "after"]
