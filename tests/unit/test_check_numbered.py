"""Checkers that keep operation numbers, not operations (issue 17): a history file checked through
NumberedRecords gives the results of a list of Ops and of a one-shot stream of Ops, anomalies
included, and the Ops its findings name are fetched again from the file as read_history reads them."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from checkers import lww, perf, quorum, sets
from checkers.result import Anomaly, AnomalyLog
from checkers.synth import generate
from harness.history import HistoryError, HistoryFile, NumberedRecords, Op, read_history, write_jsonl
from tests.unit.test_check_records_path import QUORUM, WEAK, _damaged_register, _damaged_set

CHECKS = [
    ("lww", lww.check, "reg", {}),
    ("lww-clock", lww.check, "reg", {"clock_faults": True}),
    ("lww-few", lww.check, "reg", {"max_examples": 2}),
    ("quorum", quorum.check, "reg", QUORUM),
    ("quorum-weak", quorum.check, "reg", {**WEAK, "max_examples": 3}),
    ("perf", perf.check, "reg", {}),
    ("set", sets.check, "set", {}),
    ("set-strict", sets.check, "set", {"set_linearizable": True, "max_examples": 2}),
    ("set-perf", perf.check, "set", {}),
]


def _odd(ops: list[Op], seed: int, registers: bool) -> list[Op]:
    """Odd but legal values and fields: huge, string and float values, extra fields; for registers
    also list values and keys (a set's elements and keys must be hashable), for sets reads that
    list an element twice."""
    rng = random.Random(seed)
    for op in ops:
        if op.process == "nemesis":
            continue
        r = rng.random()
        if r < 0.02:
            op.extra = {"note": {"nested": [1, [2]]}}
        elif r < 0.03 and op.f in ("write", "add") and op.type == "invoke":
            op.value = rng.choice([10**30, "s", 0.5, *([[1, "x"]] if registers else [])])
        elif r < 0.035 and registers:
            op.key = ["k", op.key]
        elif r < 0.1 and not registers and op.type == "ok" and op.f == "read" and op.value:
            op.value = [*op.value, op.value[0]]  # an element listed twice
    return ops


def _histories(tmp_path: Path, seed: int) -> dict[str, Path]:
    reg, st = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    write_jsonl(_odd(_damaged_register(seed), seed, registers=True), reg)
    write_jsonl(_odd(_damaged_set(seed), seed, registers=False), st)
    return {"reg": reg, "set": st}


@pytest.mark.parametrize("seed", range(4))
def test_a_file_a_list_and_a_stream_give_the_same_results(tmp_path: Path, seed: int) -> None:
    paths = _histories(tmp_path, seed)
    found = 0
    for name, check, which, params in CHECKS:
        ops = list(read_history(paths[which]))
        by_file = check(HistoryFile(paths[which]), dict(params)).to_json()
        assert by_file == check(ops, dict(params)).to_json(), name
        assert by_file == check(iter(list(read_history(paths[which]))), dict(params)).to_json(), name
        found += len(by_file["anomalies"])
    assert found > 0  # anomalies turned up, so the fetched operations were compared too


def test_findings_name_the_same_ops_from_fast_and_slow_blocks(tmp_path: Path) -> None:
    # A history long enough for several read blocks, with lines that only the line-by-line path
    # reads (an undocumented field, a blank line) among findings, and a truncated last line.
    ops = generate("set", n_ops=3_000, clients=5, keys=2, info_rate=0.1, seed=5, nemesis_every=500)
    reads = [op for op in ops if op.type == "ok" and op.f == "read" and op.value]
    for op in reads[::50]:
        op.value = op.value[1:]  # an element goes missing: lost, stale or reappeared
        op.extra = {"mine": [1]}
    lines = _jsonl(ops).splitlines()
    for i in range(100, len(lines), 700):
        lines.insert(i, "")
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + '\n{"index":9,"ti', encoding="utf-8")
    expect = list(read_history(path))
    records = HistoryFile(path).records()
    assert isinstance(records, NumberedRecords)
    assert sum(1 for _ in records) == len(expect)
    assert [records.op(n) for n in range(len(expect))] == expect
    assert [records.op(n) for n in range(len(expect) - 1, -1, -97)] == expect[::-97]
    params = {"max_examples": 1000, "set_linearizable": True}
    by_file = sets.check(HistoryFile(path), dict(params)).to_json()
    assert by_file == sets.check(expect, dict(params)).to_json()
    assert by_file["valid"] is False
    assert any("mine" in op for a in by_file["anomalies"] for op in a["ops"])


def _jsonl(ops: list[Op]) -> str:
    return "".join(json.dumps(op.to_dict()) + "\n" for op in ops)


def test_a_file_that_shrank_before_a_finding_was_fetched_says_so(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_jsonl(generate("register", n_ops=2_000, clients=4, keys=3, seed=1), path)
    records = NumberedRecords(path)
    n = sum(1 for _ in records)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(HistoryError, match="shrank while it was being checked"):
        records.op(n - 1)
    with pytest.raises(IndexError):
        records.op(-1)


@pytest.mark.parametrize("bad, message", [
    ('{"index":0,"time":0,"process":"n1","type":"ok","f":"x"}', "field 'process' must be an integer or 'nemesis'"),
    ('{"index":0,"time":0,"process":0,"type":"ok","f":"x","timestamp":"1"}', "field 'timestamp' must be an integer"),
    ("{oops", "not valid JSON"),
])
def test_checkers_reading_a_file_refuse_bad_lines_as_the_op_path_does(tmp_path: Path, bad: str, message: str) -> None:
    path = tmp_path / "h.jsonl"
    write_jsonl(generate("register", n_ops=300, clients=3, keys=2, seed=2), path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(bad + "\n" + '{"index":9,"time":9,"process":0,"type":"invoke","f":"read"}\n')
    for check, params in ((lww.check, {}), (quorum.check, QUORUM), (sets.check, {}), (perf.check, {})):
        for history in (HistoryFile(path), read_history(path)):
            with pytest.raises(HistoryError, match=f"h.jsonl:601: .*{message}"):
                check(history, dict(params))


def test_a_lazy_anomaly_is_counted_always_and_built_only_when_kept() -> None:
    log = AnomalyLog(2)
    built: list[int] = []

    def make(i: int) -> Any:
        built.append(i)
        return Anomaly("lost", f"#{i}")

    for i in range(5):
        log.add_lazy("lost", lambda: make(i))
    log.add_lazy("stale", lambda: Anomaly("stale", "s"))
    assert log.count("lost") == 5 and built == [0, 1]
    assert [a.explanation for a in log.examples] == ["#0", "#1", "s"]
