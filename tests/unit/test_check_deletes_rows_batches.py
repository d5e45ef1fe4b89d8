"""Deletes, rows and batches on hand-made histories: register deletes (nil), resurrections,
per-cell row checks and batch row isolation, valid and invalid."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from checkers import isolation, linearizable, lww, quorum
from checkers.cells import project_rows
from checkers.compose import check_all
from checkers.synth import HistoryBuilder, generate
from harness.history import Op, write_jsonl
from harness.report.render import collect
from harness.workloads import WorkloadSettings, make_workload, validate_delete_fraction

RF = {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"}


def _stamps(b: HistoryBuilder, timestamps: dict[str, int]) -> HistoryBuilder:
    """Give the last (read) completion its cells' timestamps, as the row and batch workloads do."""
    b.ops[-1].extra["timestamps"] = timestamps
    return b


# ---------------------------------------------------------------------------- register deletes


def test_a_read_of_nil_after_a_delete_is_valid_everywhere() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=10)
    b.invoke(0, "delete", key="k").ok(0, None, ts=20)
    b.invoke(1, "read", key="k").ok(1, None)
    b.invoke(1, "read", key="k").ok(1, None)
    for check in (linearizable.check, lww.check):
        r = check(b.ops, {"model": "register"})
        assert r.valid is True, [a.explanation for a in r.anomalies]
    q = quorum.check(b.ops, RF)
    assert q.valid is True and q.counts["stale-read"] == 0, [a.explanation for a in q.anomalies]


def test_a_value_read_after_its_delete_completed_is_not_linearizable_and_a_lost_delete() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=10)
    b.invoke(0, "delete", key="k").ok(0, None, ts=20)
    b.invoke(1, "read", key="k").ok(1, 1, ts=10)
    assert linearizable.check(b.ops, {"model": "register"}).valid is False
    r = lww.check(b.ops)
    assert r.counts["lost-write"] == 1 and "acknowledged delete" in r.anomalies[0].explanation
    q = quorum.check(b.ops, RF)
    # Nobody saw the delete's nil: a stale read, not a resurrection.
    assert q.counts["stale-read"] == 1 and q.counts["resurrection"] == 0


def test_a_deleted_value_back_after_its_nil_was_observed_is_a_resurrection() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k", cl="QUORUM").ok(0, ts=10)
    b.invoke(0, "delete", key="k", cl="QUORUM").ok(0, None, ts=20)
    b.invoke(1, "read", key="k", cl="QUORUM").ok(1, None)
    b.invoke(2, "read", key="k", cl="QUORUM").ok(2, 1, ts=10)
    q = quorum.check(b.ops, RF)
    assert q.valid is False
    assert q.counts["resurrection"] == 1 and q.counts["stale-read"] == 0
    a = q.anomalies[0]
    assert a.kind == "resurrection" and [o.index for o in a.ops] == [2, 3, 4, 5, 6, 7]
    assert "returned the deleted value 1" in a.explanation


def test_a_resurrection_at_one_one_is_expected() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k", cl="ONE").ok(0, ts=10)
    b.invoke(0, "delete", key="k", cl="ONE").ok(0, None, ts=20)
    b.invoke(1, "read", key="k", cl="ONE").ok(1, None)
    b.invoke(2, "read", key="k", cl="ONE").ok(2, 1, ts=10)
    q = quorum.check(b.ops, {**RF, "read_cl": "ONE", "write_cl": "ONE"})
    assert q.valid is True
    assert q.counts["expected-resurrection"] == 1 and q.counts["resurrection"] == 0
    assert "expected with R + W = 2 <= N = 3" in q.details["expected"][0]["explanation"]


def test_nil_from_a_delete_still_in_flight_is_neither_stale_nor_a_lost_write() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=10)
    b.invoke(0, "delete", key="k")  # its outcome is never known
    b.invoke(1, "read", key="k").ok(1, None)
    b.info(0)
    b.invoke(1, "read", key="k").ok(1, None)
    assert linearizable.check(b.ops, {"model": "register"}).valid is True
    assert lww.check(b.ops).valid is True
    assert quorum.check(b.ops, RF).valid is True


def test_nil_before_any_delete_after_an_acknowledged_write_is_stale() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, key="k").ok(0, ts=10)
    b.invoke(1, "read", key="k").ok(1, None)
    b.invoke(0, "delete", key="k").ok(0, None, ts=20)  # invoked after the read ended: no excuse
    q = quorum.check(b.ops, RF)
    assert q.counts["stale-read"] == 1
    assert linearizable.check(b.ops, {"model": "register"}).valid is False


def test_a_nil_read_promises_nothing_to_a_later_read_of_a_newer_write() -> None:
    """Monotonic reads: nil may come from an older delete while a newer delete is still in flight."""
    b = HistoryBuilder()
    b.invoke(0, "delete", key="k").ok(0, None, ts=10)
    b.invoke(3, "delete", key="k")  # in flight with a greater timestamp, never acknowledged
    b.invoke(1, "read", key="k").ok(1, None)
    b.invoke(2, "write", 2, key="k").ok(2, ts=15)
    b.invoke(1, "read", key="k").ok(1, 2, ts=15)
    b.info(3)
    q = quorum.check(b.ops, RF)
    assert q.valid is True, [a.explanation for a in q.anomalies]
    assert linearizable.check(b.ops, {"model": "register"}).valid is True


@pytest.mark.parametrize("seed", range(6))
def test_no_checker_finds_anything_in_linearizable_histories_with_deletes(seed: int) -> None:
    """Sequential executions with deletes (synth): every read of nil is one a delete explains."""
    ops = generate("register", n_ops=1_500, clients=8, keys=3, info_rate=0.05, seed=seed, cas=False, deletes=0.3)
    assert sum(1 for o in ops if o.f == "delete" and o.type == "ok") > 100
    assert linearizable.check(ops, {"model": "register"}).valid is True
    r = lww.check(ops)
    assert r.valid is True, [a.explanation for a in r.anomalies[:3]]
    q = quorum.check(ops, RF)
    assert q.valid is True, [a.explanation for a in q.anomalies[:3]]


# ---------------------------------------------------------------------------- rows


def _valid_row_history() -> HistoryBuilder:
    b = HistoryBuilder()
    b.invoke(0, "write", {"c0": 1}, key=7).ok(0, ts=10)
    b.invoke(0, "write", {"c1": 2}, key=7).ok(0, ts=20)
    b.invoke(1, "read", key=7).ok(1, {"c0": 1, "c1": 2})
    _stamps(b, {"c0": 10, "c1": 20})
    b.invoke(0, "delete", ["c0"], key=7).ok(0, ts=30)
    b.invoke(1, "read", key=7).ok(1, {"c1": 2})
    _stamps(b, {"c1": 20})
    b.invoke(0, "delete", None, key=7).ok(0, ts=40)
    b.invoke(1, "read", key=7).ok(1, {})
    _stamps(b, {})
    return b


def test_row_projection_makes_one_register_per_cell() -> None:
    ops, originals = project_rows(_valid_row_history().ops)
    keys = {o.key for o in ops}
    assert keys == {(7, "c0"), (7, "c1")}
    # The row delete deletes both cells; the reads read both, nil where the row had nothing.
    deletes = [o for o in ops if o.f == "delete" and o.type == "ok"]
    assert sorted(o.key for o in deletes) == [(7, "c0"), (7, "c0"), (7, "c1")]
    last_reads = [o for o in ops if o.f == "read" and o.type == "ok" and o.index == 13]
    assert {o.key: o.value for o in last_reads} == {(7, "c0"): None, (7, "c1"): None}
    assert originals[13].value == {}


def test_a_row_history_with_column_and_row_deletes_is_valid() -> None:
    res = check_all(_valid_row_history().ops, {"model": "row", **RF})
    assert set(res.results) == {"linearizable", "lww", "quorum", "perf"}
    assert res.valid is True, {n: [a.explanation for a in r.anomalies] for n, r in res.results.items()}


def test_a_cell_resurrected_after_a_row_delete_names_the_row_operations() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", {"c0": 1}, key=7, cl="QUORUM").ok(0, ts=10)
    b.invoke(0, "write", {"c1": 2}, key=7, cl="QUORUM").ok(0, ts=11)
    b.invoke(0, "delete", None, key=7, cl="QUORUM").ok(0, ts=20)
    b.invoke(1, "read", key=7, cl="QUORUM").ok(1, {})
    _stamps(b, {})
    b.invoke(2, "read", key=7, cl="QUORUM").ok(2, {"c0": 1})
    _stamps(b, {"c0": 10})
    res = check_all(b.ops, {"model": "row", **RF})
    assert res.valid is False
    q = res.results["quorum"]
    assert q.counts["resurrection"] == 1
    a = q.anomalies[0]
    assert a.key == [7, "c0"]
    # The original row operations: the row delete, the read of the empty row, the torn read.
    assert [(o.index, o.f, o.value) for o in a.ops] == [
        (4, "delete", None), (5, "delete", None), (6, "read", None), (7, "read", {}),
        (8, "read", None), (9, "read", {"c0": 1})]
    assert res.results["linearizable"].valid is False


def test_a_column_write_no_later_read_shows_is_a_lost_write_of_that_cell() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", {"c0": 1}, key=7).ok(0, ts=10)
    b.invoke(0, "write", {"c1": 2}, key=7).ok(0, ts=20)
    b.invoke(1, "read", key=7).ok(1, {"c1": 2})
    _stamps(b, {"c1": 20})
    res = check_all(b.ops, {"model": "row", **RF})
    lost = res.results["lww"]
    assert lost.counts["lost-write"] == 1 and lost.anomalies[0].key == [7, "c0"]
    assert res.results["quorum"].counts["stale-read"] == 1


# ---------------------------------------------------------------------------- batches


def _batch(b: HistoryBuilder, p: int, key: Any, v: int, ts: int) -> None:
    b.invoke(p, "batch", {"c0": v, "c1": v, "c2": v}, key=key).ok(p, ts=ts)


def test_reads_of_whole_batches_are_isolated_and_linearizable() -> None:
    b = HistoryBuilder()
    b.invoke(1, "read", key=1).ok(1, {})
    _stamps(b, {})
    _batch(b, 0, 1, 1, 10)
    b.invoke(1, "read", key=1).ok(1, {"c0": 1, "c1": 1, "c2": 1})
    _stamps(b, {"c0": 10, "c1": 10, "c2": 10})
    _batch(b, 0, 1, 2, 20)
    b.invoke(1, "read", key=1).ok(1, {"c0": 2, "c1": 2, "c2": 2})
    _stamps(b, {"c0": 20, "c1": 20, "c2": 20})
    res = check_all(b.ops, {"model": "batch", **RF})
    assert set(res.results) == {"isolation", "linearizable", "lww", "quorum", "perf"}
    assert res.valid is True, {n: [a.explanation for a in r.anomalies] for n, r in res.results.items()}
    assert res.results["isolation"].counts["consistent-reads"] == 2


def test_a_read_mixing_batches_with_distinct_timestamps_is_a_row_isolation_anomaly() -> None:
    b = HistoryBuilder()
    _batch(b, 0, 1, 1, 10)
    _batch(b, 0, 1, 2, 20)
    b.invoke(1, "read", key=1).ok(1, {"c0": 2, "c1": 1, "c2": 2})
    _stamps(b, {"c0": 20, "c1": 10, "c2": 20})
    r = isolation.check(b.ops)
    assert r.valid is False and r.counts["row-isolation"] == 1
    a = r.anomalies[0]
    assert [o.index for o in a.ops] == [0, 1, 2, 3, 4, 5]  # both batches, then the read
    assert "distinct timestamps" in a.explanation and "c1=1@10" in a.explanation


def test_a_mix_of_batches_with_equal_timestamps_is_expected_not_invalid() -> None:
    b = HistoryBuilder()
    b.invoke(0, "batch", {"c0": 1, "c1": 1}, key=1).invoke(2, "batch", {"c0": 2, "c1": 2}, key=1)
    b.ok(0, ts=10).ok(2, ts=10)  # two coordinators stamped the same microsecond
    b.invoke(1, "read", key=1).ok(1, {"c0": 2, "c1": 1})
    _stamps(b, {"c0": 10, "c1": 10})
    r = isolation.check(b.ops)
    assert r.valid is True
    assert r.counts["expected-equal-timestamp-mix"] == 1 and r.counts["row-isolation"] == 0
    assert r.details["expected"][0]["kind"] == "equal-timestamp-mix"


def test_a_row_missing_some_of_a_batchs_columns_is_a_row_isolation_anomaly() -> None:
    b = HistoryBuilder()
    _batch(b, 0, 1, 1, 10)
    b.invoke(1, "read", key=1).ok(1, {"c0": 1, "c2": 1})
    _stamps(b, {"c0": 10, "c2": 10})
    r = isolation.check(b.ops)
    assert r.valid is False and "1 of the row's 3 columns are missing" in r.anomalies[0].explanation
    # The torn read is left to the isolation checker, not misread as a register value.
    res = check_all(b.ops, {"model": "batch", **RF})
    assert res.results["lww"].valid is True and res.results["linearizable"].valid is True


def test_a_row_deleted_by_a_batch_reads_empty_and_a_row_back_after_it_is_stale() -> None:
    b = HistoryBuilder()
    _batch(b, 0, 1, 1, 10)
    b.invoke(0, "delete", key=1).ok(0, None, ts=20)
    b.invoke(1, "read", key=1).ok(1, {})
    _stamps(b, {})
    res = check_all(b.ops, {"model": "batch", **RF})
    assert res.valid is True, {n: [a.explanation for a in r.anomalies] for n, r in res.results.items()}
    b.invoke(1, "read", key=1).ok(1, {"c0": 1, "c1": 1, "c2": 1})
    _stamps(b, {"c0": 10, "c1": 10, "c2": 10})
    res = check_all(b.ops, {"model": "batch", **RF})
    assert res.results["isolation"].valid is True  # a whole batch: isolated, just deleted
    assert res.results["quorum"].counts["resurrection"] == 1
    assert res.results["linearizable"].valid is False


def _sequential_rows(seed: int, n_ops: int, batch: bool) -> list[Op]:
    """A row (or batch) history from a sequential execution: each op takes effect at one instant
    between its invocation and completion, timestamps are those instants, and reads return the
    live cells then, as the store would; some ops end info (applied or not)."""
    rng = random.Random(seed)
    columns = ["c0", "c1", "c2"]
    clients, procs, next_proc = 6, list(range(6)), 6
    clock = [0] * clients
    plans = []
    for n in range(n_ops):
        c = rng.randrange(clients)
        inv = clock[c] + rng.randrange(1, 500)
        comp = inv + rng.randrange(50, 3_000)
        clock[c] = comp
        key, r = rng.randrange(2), rng.random()
        if r < 0.4:
            f, value = "read", None
        elif r < 0.6:
            f, value = "delete", None if batch or rng.random() < 0.5 else [rng.choice(columns)]
        elif batch:
            f, value = "batch", {col: n for col in columns}
        else:
            f, value = "write", {rng.choice(columns): n}
        outcome = "info" if f != "read" and rng.random() < 0.08 else "ok"
        plans.append({"p": procs[c], "inv": inv, "lp": rng.randrange(inv + 1, comp), "comp": comp, "f": f,
                      "key": key, "value": value, "outcome": outcome,
                      "applied": outcome == "ok" or rng.random() < 0.5})
        if outcome == "info":
            procs[c], next_proc = next_proc, next_proc + 1
    cells: dict[tuple[int, str], tuple[int, int]] = {}  # (key, column) -> (value, ts)
    for p in sorted(plans, key=lambda p: p["lp"]):
        ts = p["lp"]
        if not p["applied"]:
            continue
        if p["f"] == "read":
            p["out"] = {col: cells[(p["key"], col)][0] for col in columns if (p["key"], col) in cells}
            p["stamps"] = {col: cells[(p["key"], col)][1] for col in columns if (p["key"], col) in cells}
        elif p["f"] == "delete":
            for col in p["value"] or columns:
                cells.pop((p["key"], col), None)
        else:
            for col, v in p["value"].items():
                cells[(p["key"], col)] = (v, ts)
    events = []
    for p in plans:
        events.append((p["inv"], 0, Op(0, p["inv"], p["p"], "invoke", p["f"], p["key"], p["value"])))
        done = Op(0, p["comp"], p["p"], p["outcome"], p["f"], p["key"], p.get("out", p["value"]))
        if p["outcome"] == "ok":
            done.timestamp = None if p["f"] == "read" else p["lp"]
            if p["f"] == "read":
                done.extra["timestamps"] = p["stamps"]
        else:
            done.error = "WriteTimeout"
        events.append((p["comp"], 1, done))
    events.sort(key=lambda e: (e[0], e[1]))
    for i, (_, _, op) in enumerate(events):
        op.index = i
    return [op for _, _, op in events]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch", [False, True], ids=["row", "batch"])
def test_no_checker_finds_anything_in_sequential_row_and_batch_histories(seed: int, batch: bool) -> None:
    ops = _sequential_rows(seed, 800, batch)
    res = check_all(ops, {"model": "batch" if batch else "row", **RF})
    assert res.valid is True, {n: [a.explanation for a in r.anomalies[:2]] for n, r in res.results.items()}
    if batch:
        assert res.results["isolation"].counts["consistent-reads"] > 50
    else:
        # Some reads saw a cell deleted after it had been written.
        assert res.results["lww"].counts["reads"] > 500


# ---------------------------------------------------------------------------- workloads


def _stream(name: str, fraction: float | None, n: int = 400) -> list[Any]:
    w = make_workload(name, WorkloadSettings(3, "QUORUM", "QUORUM", 300, fraction))
    rng = random.Random(5)
    return [w.next_op(rng) for _ in range(n)]


def test_register_deletes_only_with_a_delete_fraction_and_the_stream_is_unchanged_without() -> None:
    assert not any(op.f == "delete" for op in _stream("register", None))
    assert _stream("register", None) == _stream("register", 0.0)
    ops = _stream("register", 0.5)
    deletes = [op for op in ops if op.f == "delete"]
    assert deletes and all(op.value is None for op in deletes)


def test_row_and_batch_streams_have_the_documented_shapes() -> None:
    row = _stream("row", None)
    assert {op.f for op in row} == {"read", "write", "delete"}
    assert any(op.value is None for op in row if op.f == "delete")  # row deletes
    assert any(isinstance(op.value, list) for op in row if op.f == "delete")  # column deletes
    assert not any(op.f == "delete" for op in _stream("row", 0.0))
    batches = [op for op in _stream("batch", None) if op.f == "batch"]
    assert batches and all(len(set(op.value.values())) == 1 and len(op.value) == 4 for op in batches)
    assert not any(op.f == "delete" for op in _stream("batch", None))
    assert any(op.f == "delete" and op.value is None for op in _stream("batch", 0.2))


@pytest.mark.parametrize(("workload", "fraction", "message"), [
    ("set", 0.1, "applies to the register, row, batch workloads"),
    ("lww-rmw", 0.1, "applies to the register, row, batch workloads"),
    ("row", 1.5, "between 0 and 1"),
])
def test_bad_delete_fractions_are_named(workload: str, fraction: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_delete_fraction(workload, fraction)


# ---------------------------------------------------------------------------- the report


def test_the_report_shows_resurrections_and_expected_ones_with_their_operations(tmp_path: Path) -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", {"c0": 1}, key=7, cl="QUORUM").ok(0, ts=10)
    b.invoke(0, "delete", None, key=7, cl="QUORUM").ok(0, ts=20)
    b.invoke(1, "read", key=7, cl="QUORUM").ok(1, {})
    _stamps(b, {})
    b.invoke(2, "read", key=7, cl="QUORUM").ok(2, {"c0": 1})
    _stamps(b, {"c0": 10})
    b.invoke(0, "write", {"c1": 5}, key=8, cl="ONE").ok(0, ts=30)
    b.invoke(0, "delete", ["c1"], key=8, cl="ONE").ok(0, ts=40)
    b.invoke(1, "read", key=8, cl="ONE").ok(1, {})
    _stamps(b, {})
    b.invoke(2, "read", key=8, cl="ONE").ok(2, {"c1": 5})
    _stamps(b, {"c1": 30})
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(b.ops, run / "history.jsonl")
    (run / "test.json").write_text(json.dumps({"name": "row-partition", "params": {"model": "row", **RF}}))
    check_all(b.ops, {"model": "row", **RF}, save_to=run / "results.json")
    data = collect(run)
    q = next(c for c in data["checkers"] if c["name"] == "quorum")
    (found,) = [a for a in q["anomalies"] if a["kind"] == "resurrection"]
    # The rows of the timeline: the delete, the read that saw nil, the read of the deleted value.
    assert [data["ops"]["ii"][r] for r in found["rows"]] == [2, 4, 6]
    (allowed,) = q["expected"]
    assert allowed["kind"] == "resurrection" and allowed["key"] == [8, "c1"]
    assert [data["ops"]["ii"][r] for r in allowed["rows"]] == [10, 12, 14]


def test_the_report_shows_a_torn_batch_read_with_both_batches(tmp_path: Path) -> None:
    b = HistoryBuilder()
    _batch(b, 0, 1, 1, 10)
    _batch(b, 0, 1, 2, 20)
    b.invoke(1, "read", key=1).ok(1, {"c0": 2, "c1": 1, "c2": 2})
    _stamps(b, {"c0": 20, "c1": 10, "c2": 20})
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(b.ops, run / "history.jsonl")
    (run / "test.json").write_text(json.dumps({"name": "batch-partition", "params": {"model": "batch", **RF}}))
    check_all(b.ops, {"model": "batch", **RF}, save_to=run / "results.json")
    data = collect(run)
    iso = next(c for c in data["checkers"] if c["name"] == "isolation")
    assert iso["valid"] is False
    (torn,) = iso["anomalies"]
    assert torn["kind"] == "row-isolation"
    assert [data["ops"]["ii"][r] for r in torn["rows"]] == [0, 2, 4]  # batch 1, batch 2, the read
