"""check_all reads a small history file once for every checker, and streams a large one per
checker (checkers/compose.py SHARED_READ_BYTES), with the same verdicts either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from checkers import compose
from checkers.synth import generate
from harness import history
from harness.history import write_jsonl


def _passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the passes over any history file (each pass starts one _line_blocks walk)."""
    calls: list[int] = []
    real = history._line_blocks

    def counted(path: Any) -> Any:
        calls.append(1)
        return real(path)

    monkeypatch.setattr(history, "_line_blocks", counted)
    return calls


def test_a_small_history_is_read_once_and_a_large_one_per_checker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "history.jsonl"
    write_jsonl(generate("register", n_ops=400, clients=5, keys=4, info_rate=0.05, seed=3), path)
    params = {"model": "register", "replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"}
    calls = _passes(monkeypatch)
    shared = compose.check_all(path, params)
    assert len(calls) == 1
    names = list(shared.results)
    assert len(names) >= 3

    calls.clear()
    monkeypatch.setattr(compose, "SHARED_READ_BYTES", 0)  # every file is "large" now
    streamed = compose.check_all(path, params)
    assert len(calls) >= len(names) - 1  # read again by (nearly) every checker
    assert {n: r.valid for n, r in streamed.results.items()} == {n: r.valid for n, r in shared.results.items()}
    assert {n: r.counts for n, r in streamed.results.items()} == {n: r.counts for n, r in shared.results.items()}
