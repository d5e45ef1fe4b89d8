"""The record path (HistoryFile: lww, quorum, set and perf read line records, not Ops) gives the
same results as the Op path, on hand-made and generated histories with and without anomalies."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from checkers import compose, lww, perf, quorum, sets
from checkers.synth import HistoryBuilder, generate
from harness.history import HistoryError, HistoryFile, Op, as_op, read_history, write_jsonl

QUORUM = {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"}
WEAK = {"replication_factor": 3, "read_cl": "ONE", "write_cl": "ONE"}


def _both(path: Path, check: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return check(list(read_history(path)), dict(params)).to_json(), check(HistoryFile(path), dict(params)).to_json()


def _damaged_register(seed: int) -> list[Op]:
    """A generated register history with coordinators, levels, nemesis faults and damage: swapped
    and missing timestamps, stale and phantom reads, so every kind of finding turns up."""
    rng = random.Random(seed)
    ops = generate("register", n_ops=400, clients=6, keys=5, info_rate=0.1, seed=seed, nemesis_every=60, deletes=0.2)
    for op in ops:
        if op.process == "nemesis":
            continue
        op.node = rng.choice(["n1", "n2", "n3", None])
        if op.type == "ok" and rng.random() < 0.1:
            op.cl = rng.choice(["ONE", "QUORUM", "ALL"])
        if op.type == "ok" and op.timestamp is not None and rng.random() < 0.08:
            op.timestamp = rng.choice([None, op.timestamp - 5_000, op.timestamp + 5_000, 1])
        if op.type == "ok" and op.f == "read" and rng.random() < 0.05:
            op.value = rng.choice([None, -1, 3, [1, 2]])
        if rng.random() < 0.02:
            op.extra = {"note": "x"}
        elif op.type == "ok" and op.f == "write" and rng.random() < 0.3:  # who acknowledged (quorum names them)
            op.extra = {"replicas": ["n1", "n2", "n3"], "acked": ["n1"]}
    # Clock and kill faults for the LWW checker's fault context.
    t = ops[len(ops) // 2].time
    ops.insert(len(ops) // 2, Op(10_000, t, "nemesis", "info", "start-clock", value={"delta_ms": {"n1": 3}}))
    ops.insert(len(ops) // 3, Op(10_001, t, "nemesis", "info", "start-kill", value={"nodes": ["n2"]}))
    return ops


def _damaged_set(seed: int) -> list[Op]:
    """A generated set history where some reads lose, gain or repeat elements."""
    rng = random.Random(seed)
    ops = generate("set", n_ops=400, clients=6, keys=3, info_rate=0.1, seed=seed, nemesis_every=80)
    for op in ops:
        if op.type == "ok" and op.f == "read" and isinstance(op.value, list) and rng.random() < 0.2:
            vals = list(op.value)
            if vals and rng.random() < 0.7:
                del vals[rng.randrange(len(vals))]
            else:
                vals.append(rng.choice([-1, 10_000]))
            op.value = vals
    return ops


@pytest.mark.parametrize("seed", range(6))
def test_generated_histories_give_the_same_results(tmp_path: Path, seed: int) -> None:
    reg, st = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    write_jsonl(_damaged_register(seed), reg)
    write_jsonl(_damaged_set(seed), st)
    found = 0
    for check, path, params in ((lww.check, reg, {}), (quorum.check, reg, QUORUM), (quorum.check, reg, WEAK),
                                (perf.check, reg, {}), (sets.check, st, {}), (perf.check, st, {})):
        ops_result, records_result = _both(path, check, params)
        assert records_result == ops_result
        found += len(ops_result["anomalies"])
    assert found > 0  # the damage was found, so the anomaly paths were compared too


def test_hand_made_history_with_unfinished_operations(tmp_path: Path) -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=2_000)
    b.invoke(1, "write", 2, key="k").ok(1, ts=1_000)  # an inversion, and a lost write
    b.invoke(3, "cas", [2, 3], key="k").ok(3, ts=1_500)
    b.invoke(2, "read", key="k").ok(2, 1, ts=2_000)
    b.invoke(4, "delete", key="k").info(4)
    b.invoke(5, "write", 7, key=["a", 1])  # never completed
    b.invoke(6, "append", 1, key="l").ok(6)
    s = HistoryBuilder()
    s.invoke(7, "add", 5, key="s").ok(7)
    s.invoke(8, "read", key="s").ok(8, [5, 6])  # 6 was never added
    s.invoke(7, "add", 8, key="s").ok(7)  # acknowledged, then missing from the final read
    s.invoke(8, "read", key="s").ok(8, [5])
    s.invoke(9, "add", 9, key="s")  # never completed
    path, set_path = tmp_path / "h.jsonl", tmp_path / "s.jsonl"
    write_jsonl(b.ops, path)
    write_jsonl(s.ops, set_path)
    for check, p, params in ((lww.check, path, {}), (quorum.check, path, QUORUM), (perf.check, path, {}),
                             (sets.check, set_path, {}), (perf.check, set_path, {})):
        ops_result, records_result = _both(p, check, params)
        assert records_result == ops_result
    assert lww.check(HistoryFile(path)).valid is False and sets.check(HistoryFile(set_path)).counts["unexpected"] == 1


def test_check_all_of_a_path_matches_the_ops(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_jsonl(_damaged_register(7), path)
    params = {"model": "register", **QUORUM, "checkers": ["lww", "quorum", "perf"]}
    by_path = compose.check_all(path, params).to_json()
    by_ops = compose.check_all(list(read_history(path)), params).to_json()
    by_path.pop("elapsed_s")
    by_ops.pop("elapsed_s")
    assert by_path == by_ops and by_path["valid"] is False


def test_other_formats_are_read_as_ops(tmp_path: Path) -> None:
    path = tmp_path / "h.edn"
    path.write_text('{:index 0 :time 1 :type :invoke :f :add :process 0 :value 1}\n'
                    '{:index 1 :time 2 :type :ok :f :add :process 0 :value 1}\n')
    assert HistoryFile(path).records() is None
    assert sets.check(HistoryFile(path)).counts["elements"] == 1


def _lines_file(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_text("\n".join(lines) + end, encoding="utf-8")
    return path


GOOD = '{"index":%d,"time":%d,"process":0,"type":"invoke","f":"write","key":1,"value":2}'


def test_line_records_read_as_the_same_ops_as_read_jsonl(tmp_path: Path) -> None:
    odd = [
        '{"index":1,"time":2,"process":"nemesis","type":"info","f":"start-kill","value":{"nodes":["n1"]},"action":"kill"}',
        '{"index":2,"time":3,"process":0,"type":"ok","f":"write","timestamp":7,"replicas":["n1"],"acked":["n1"]}',
        '{"index":3,"time":4,"process":1,"type":"invoke","f":"write","value":123456789012345678901234567890}',
        '{"index":4,"time":5,"process":1,"type":"ok","f":"write","value":NaN,"mine":{"a":[1]}}',
        '',
        '{"index":5,"time":6,"process":2,"type":"invoke","f":"read","value":' + "[" * 60 + "]" * 60 + '}',
        '{"index":6,"index":7,"time":6,"process":2,"type":"ok","f":"read","value":"\\ud800"}',
    ]
    lines = [GOOD % (i, i) for i in range(2000)] + odd + [GOOD % (i, i) for i in range(3000, 5000)]
    path = _lines_file(tmp_path / "h.jsonl", lines + ['{"index":9,"ti'], end="")  # a truncated last line
    ops = list(read_history(path))
    records = list(HistoryFile(path).records() or [])
    assert [as_op(r) for r in records] == ops and len(ops) == len(lines) - 1
    assert sum(isinstance(r, Op) for r in records) < 1000  # most came through the fast path


@pytest.mark.parametrize("bad, message", [
    ('{"index":0,"time":0,"process":"n1","type":"ok","f":"x"}', "field 'process' must be an integer or 'nemesis'"),
    ('{"index":0,"time":0,"process":0,"type":"done","f":"x"}', "field 'type' must be one of"),
    ('{"index":0,"time":0,"process":0,"type":"ok","f":"x","timestamp":1.5}', "field 'timestamp' must be an integer"),
    ('{"index":0,"time":0,"process":0,"type":"ok"}', "missing field 'f'"),
    ('{"index":0,"time":0,"process":0,"type":"ok","f":"x","value":' + "[" * 150 + "]" * 150 + "}", "nested deeper than"),
    ("{oops", "not valid JSON"),
])
def test_line_records_refuse_what_read_jsonl_refuses_naming_the_line(tmp_path: Path, bad: str, message: str) -> None:
    path = _lines_file(tmp_path / "h.jsonl", [GOOD % (i, i) for i in range(500)] + [bad, GOOD % (9, 9)])
    for read in (lambda: list(read_history(path)), lambda: list(HistoryFile(path).records() or [])):
        with pytest.raises(HistoryError, match=f"h.jsonl:501: {re.escape(message)}"):
            read()
